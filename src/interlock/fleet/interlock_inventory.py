"""interlock's own inventory YAML: strict, every mistake an error with file and line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from interlock.documents import MarkedMap, MarkedReader, MarkedSeq
from interlock.fleet.inventory import (
    MAX_HOSTS,
    NAME_RE,
    RESERVED_GROUPS,
    USER_RE,
    GroupTree,
    Host,
    Inventory,
    LoadBalancer,
    is_address,
)

_TOP_KEYS = ("defaults", "known_hosts", "hosts", "groups", "loadbalancers")
_DEFAULT_KEYS = ("user", "port", "key")
_HOST_KEYS = ("address", "port", "user", "key", "groups", "labels", "vars")
_GROUP_KEYS = ("vars", "children")
_LB_KEYS = ("host", "socket", "tcp")


def read_interlock_yaml(data: MarkedMap, path: Path) -> Inventory:
    # Relative key and known_hosts paths are relative to the inventory file, not to the cwd.
    return _InterlockReader(str(path), path.absolute().parent).read(data)


class _InterlockReader(MarkedReader):
    def __init__(self, path: str, base: Path) -> None:
        super().__init__(path)
        self.base = base

    def read(self, data: MarkedMap) -> Inventory:
        # Top-level `x-...` keys hold YAML anchors for reuse (as in compose files) and are ignored.
        self.check_keys(
            data, (*_TOP_KEYS, *(k for k in data if str(k).startswith("x-"))), "the inventory"
        )
        defaults = self.section(data, "defaults", optional=True)
        self.check_keys(defaults, _DEFAULT_KEYS, "defaults")
        default_port = self.port(defaults, "port", 22)
        default_user = self.user(defaults, "user", "root")
        default_key = self.path_value(defaults, "key")
        tree = GroupTree(self.path)
        groups_data = self.section(data, "groups", optional=True)
        group_vars = self.read_groups(groups_data, tree)
        specs = self.read_host_specs(data, tree)
        self.check_children_defined(tree, groups_data)
        tree.check_acyclic()
        parents = tree.parents()
        depths = tree.depths(parents)
        hosts: dict[str, Host] = {}
        host_vars: dict[str, Mapping[str, object]] = {}
        for name, (spec, line) in specs.items():
            member_of = set(tree.groups_of(name))
            for group in tree.groups_of(name):
                member_of |= tree.ancestors(group, parents)
            merged: dict[str, object] = {}
            for group in sorted(member_of, key=lambda g: (depths[g], g)):
                merged.update(group_vars.get(group, {}))
            merged.update(self.variables(spec, f"host {name}"))
            hosts[name] = Host(
                name=name,
                address=self.address(spec, name, line),
                port=self.port(spec, "port", default_port),
                user=self.user(spec, "user", default_user),
                key=self.path_value(spec, "key") or default_key,
                groups=tuple(sorted(member_of)),
                labels=self.labels(spec, name),
            )
            host_vars[name] = merged
        return Inventory(
            path=self.path,
            hosts=hosts,
            groups=tree.members(list(hosts)),
            loadbalancers=self.loadbalancers(data, hosts),
            known_hosts=self.path_value(data, "known_hosts"),
            host_vars=host_vars,
        )

    def read_groups(self, groups_data: MarkedMap, tree: GroupTree) -> dict[str, MarkedMap]:
        """Declared groups and their children into `tree`; returns each group's variables."""
        group_vars: dict[str, MarkedMap] = {}
        specs: dict[str, MarkedMap] = {}
        for name, spec in groups_data.items():
            line = groups_data.line_of(name)
            self.check_name(name, "group", line)
            if name in RESERVED_GROUPS:
                raise self.fail(f"groups: {name!r} is a reserved group name", line)
            tree.add_group(name)
            specs[name] = self.nested_mapping(spec, f"group {name}", line)
            self.check_keys(specs[name], _GROUP_KEYS, f"group {name}")
            group_vars[name] = self.variables(specs[name], f"group {name}")
        for name, spec in specs.items():
            for child, child_line in self.string_list(spec, "children", f"group {name}"):
                tree.add_child(name, child, child_line)
        return group_vars

    def read_host_specs(self, data: MarkedMap, tree: GroupTree) -> dict[str, tuple[MarkedMap, int]]:
        """Each host's mapping and line, its group memberships recorded in `tree`."""
        hosts_data = self.section(data, "hosts", optional=False)
        if not hosts_data:
            raise self.fail("hosts: the inventory defines no hosts", data.line_of("hosts"))
        if len(hosts_data) > MAX_HOSTS:
            raise self.fail(f"more than {MAX_HOSTS} hosts in one inventory", data.line_of("hosts"))
        specs: dict[str, tuple[MarkedMap, int]] = {}
        for name, spec in hosts_data.items():
            line = hosts_data.line_of(name)
            self.check_name(name, "host", line)
            spec = self.nested_mapping(spec, f"host {name}", line)
            self.check_keys(spec, _HOST_KEYS, f"host {name}")
            specs[name] = (spec, line)
            for group, group_line in self.string_list(spec, "groups", f"host {name}"):
                if group in RESERVED_GROUPS:
                    raise self.fail(f"host {name}: {group!r} is a reserved group name", group_line)
                tree.add_host(group, name)
        for name, (_, line) in specs.items():
            if name in tree.children:
                raise self.fail(f"host {name} has the same name as a group", line)
            if not tree.groups_of(name):
                tree.add_host("ungrouped", name)
        return specs

    def check_children_defined(self, tree: GroupTree, groups_data: MarkedMap) -> None:
        defined = set(groups_data) | {g for g, hosts in tree.direct_hosts.items() if hosts}
        for (parent, child), line in tree.edge_lines.items():
            if child not in defined:
                raise self.fail(
                    f"group {parent}: child group {child!r} is not defined "
                    "(no host is in it and it is not under groups:)",
                    line,
                )

    # value readers: each names the key and its line when the value is wrong

    def nested_mapping(self, value: object, where: str, line: int) -> MarkedMap:
        if value is None:
            empty = MarkedMap()
            empty.line, empty.key_lines = line, {}
            return empty
        if not isinstance(value, MarkedMap):
            raise self.fail(f"{where} must be a mapping, not {_kind(value)}", line)
        return value

    def section(self, data: MarkedMap, key: str, *, optional: bool) -> MarkedMap:
        if key not in data:
            if not optional:
                raise self.fail(f"missing required key {key!r}", data.line)
            return self.nested_mapping(None, key, data.line)
        return self.nested_mapping(data[key], key, data.line_of(key))

    def variables(self, data: MarkedMap, where: str) -> MarkedMap:
        values = self.section(data, "vars", optional=True)
        for key in values:
            if not isinstance(key, str):
                raise self.fail(
                    f"{where}: variable names must be strings, not {key!r}", values.line_of(key)
                )
        return values

    def string_list(self, data: MarkedMap, key: str, where: str) -> list[tuple[str, int]]:
        value = data.get(key)
        if value is None:
            return []
        line = data.line_of(key)
        if not isinstance(value, MarkedSeq):
            raise self.fail(f"{where}: {key} must be a list, not {_kind(value)}", line)
        result: list[tuple[str, int]] = []
        for item, item_line in zip(value, value.item_lines, strict=True):
            if not isinstance(item, str):
                raise self.fail(
                    f"{where}: {key} entries must be names, not {_kind(item)}", item_line
                )
            self.check_name(item, "group", item_line)
            result.append((item, item_line))
        return result

    def check_name(self, name: object, kind: str, line: int) -> None:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(
                f"invalid {kind} name {name!r} (letters, digits, '_', '.', '-'; "
                "not starting with '.' or '-')",
                line,
            )

    def port(self, data: MarkedMap, key: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.fail(
                f"{key} must be a port number (1-65535), not {value!r}", data.line_of(key)
            )
        return value

    def user(self, data: MarkedMap, key: str, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not USER_RE.fullmatch(value):
            raise self.fail(f"{key} must be a user name, not {value!r}", data.line_of(key))
        return value

    def path_value(self, data: MarkedMap, key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key} must be a file path, not {value!r}", data.line_of(key))
        return str(self.base / os.path.expanduser(value))

    def address(self, data: MarkedMap, name: str, line: int) -> str:
        if "address" not in data:
            raise self.fail(f"host {name}: missing required key 'address'", line)
        value = data["address"]
        if not isinstance(value, str) or not is_address(value):
            raise self.fail(
                f"host {name}: address must be an IP address or DNS name, not {value!r}",
                data.line_of("address"),
            )
        return value

    def labels(self, data: MarkedMap, name: str) -> dict[str, str]:
        labels = self.section(data, "labels", optional=True)
        result: dict[str, str] = {}
        for key, value in labels.items():
            line = labels.line_of(key)
            if not isinstance(key, str) or not NAME_RE.fullmatch(key):
                raise self.fail(f"host {name}: invalid label name {key!r}", line)
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise self.fail(
                    f"host {name}: label {key} must be a string or an integer, not {_kind(value)}",
                    line,
                )
            result[key] = str(value)
        return result

    def loadbalancers(self, data: MarkedMap, hosts: Mapping[str, Host]) -> dict[str, LoadBalancer]:
        section = self.section(data, "loadbalancers", optional=True)
        result: dict[str, LoadBalancer] = {}
        for name, spec in section.items():
            line = section.line_of(name)
            self.check_name(name, "load balancer", line)
            spec = self.nested_mapping(spec, f"load balancer {name}", line)
            self.check_keys(spec, _LB_KEYS, f"load balancer {name}")
            values: dict[str, str] = {}
            for key in _LB_KEYS:
                if key in spec:
                    value = spec[key]
                    if not isinstance(value, str) or not value:
                        raise self.fail(
                            f"load balancer {name}: {key} must be a string", spec.line_of(key)
                        )
                    values[key] = value
            where = f"load balancer {name}"
            if "tcp" in values:
                if len(values) > 1:
                    raise self.fail(f"{where}: tcp excludes host and socket", line)
                if not _is_host_port(values["tcp"]):
                    raise self.fail(
                        f"{where}: tcp must be ADDRESS:PORT, not {values['tcp']!r}",
                        spec.line_of("tcp"),
                    )
            elif "socket" not in values:
                raise self.fail(f"{where}: needs socket (with or without host) or tcp", line)
            elif not values["socket"].startswith("/"):
                raise self.fail(f"{where}: socket must be an absolute path", spec.line_of("socket"))
            if "host" in values and values["host"] not in hosts:
                raise self.fail(
                    f"{where}: host {values['host']!r} is not in the inventory",
                    spec.line_of("host"),
                )
            result[name] = LoadBalancer(name=name, **values)
        return result


def _is_host_port(value: str) -> bool:
    address, sep, port = value.rpartition(":")
    address = address.removeprefix("[").removesuffix("]")
    return bool(sep) and port.isdigit() and 0 < int(port) < 65536 and is_address(address)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
