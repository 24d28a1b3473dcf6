"""The fleet inventory: hosts, groups and load balancers.

Two sources feed the same records: interlock's own YAML (strict: every mistake is an error with
file and line) and Ansible inventories as operators already have them (`ansible_inventory`).
`load_inventory` tells them apart, so one `-i` option takes either.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interlock.errors import FileFormatError
from interlock.fleet.host_pattern import select_hosts

# Names end up in patterns, file names and remote commands: no shell or pattern metacharacters.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
RESERVED_GROUPS = frozenset({"all", "ungrouped"})
# Hosts in one inventory, and named by one host range: more is a mistake (`web[0:99999999]`
# took 3.2 GB before it was stopped), refused before anything is built.
MAX_HOSTS = 10_000
MAX_FILE_BYTES = 16 * 2**20
YAML_SUFFIXES = frozenset({".yml", ".yaml", ".json"})

_TOP_KEYS = ("defaults", "known_hosts", "hosts", "groups", "loadbalancers")
_DEFAULT_KEYS = ("user", "port", "key")
_HOST_KEYS = ("address", "port", "user", "key", "groups", "labels", "vars")
_GROUP_KEYS = ("vars", "children")
_LB_KEYS = ("host", "socket", "tcp")


@dataclass(frozen=True)
class Host:
    """One machine of the fleet and how to reach it over SSH.

    Only what reaching and scheduling the host needs: hosts are stored in plans and journals,
    so inventory variables (which hold passwords) stay on the `Inventory`.
    """

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key: str | None = None
    groups: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class LoadBalancer:
    """A haproxy admin endpoint: a socket on an inventory host, a TCP address, or a local socket."""

    name: str
    host: str | None = None
    socket: str | None = None
    tcp: str | None = None


@dataclass(frozen=True)
class Inventory:
    path: str | None
    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    loadbalancers: Mapping[str, LoadBalancer] = field(default_factory=dict)
    known_hosts: str | None = None
    # Each host's variables, for callers that ask by name; never copied into a Host.
    host_vars: Mapping[str, Mapping[str, object]] = field(default_factory=dict, repr=False)

    def select(self, limit: str | None = None) -> list[Host]:
        """The hosts an Ansible-style pattern names, in inventory order; all hosts without one.

        A name, group or glob that matches nothing is an error rather than an empty selection:
        a typo must not turn a fleet operation into a silent no-op.
        """
        names = select_hosts("all" if limit is None else limit, list(self.hosts), self.groups)
        return [self.hosts[name] for name in names]


def load_inventory(path: str | Path) -> Inventory:
    """Read interlock's YAML inventory or an Ansible INI/YAML inventory, whichever `path` holds.

    A top-level `hosts:` key marks interlock's format (Ansible's YAML has groups at the top).
    Otherwise, as Ansible decides: `.yml`, `.yaml` and `.json` files are YAML, others are INI.
    """
    # ansible_inventory builds on the records and YAML reader defined here.
    from interlock.fleet import ansible_inventory

    source = Path(path)
    text = read_text(source)
    suffix = source.suffix.lower()
    if suffix not in YAML_SUFFIXES and not _INTERLOCK_MARK_RE.search(text):
        return ansible_inventory.read_ini(text, source)
    data = load_yaml(text, str(source))
    if not isinstance(data, MarkedMap):
        raise FileFormatError(str(source), "an inventory must be a YAML mapping", 1)
    if "hosts" in data:
        return read_interlock_yaml(data, source)
    return ansible_inventory.read_yaml(data, source)


_INTERLOCK_MARK_RE = re.compile(r"^hosts:", re.MULTILINE)


def read_text(path: Path) -> str:
    """A file's text, refused when it is no regular file (a FIFO would block forever) or is
    larger than any inventory or variables file is."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise FileFormatError(str(path), "not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise FileFormatError(str(path), f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(str(path), f"not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise FileFormatError(str(path), f"cannot read: {exc.strerror or exc}") from None


# --- YAML that remembers where things were written -------------------------------------------


class MarkedMap(dict[Any, Any]):
    """A YAML mapping that knows the line it starts on and the line of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: object) -> int:
        return self.key_lines.get(key, self.line)


class MarkedSeq(list[Any]):
    """A YAML sequence that knows the line of each item."""

    line: int = 0
    item_lines: list[int]


class VaultValue(str):
    """An Ansible Vault ciphertext: kept opaque, never decrypted."""

    __slots__ = ()


class _MarkingLoader(yaml.CSafeLoader):
    def __init__(self, stream: str, path: str) -> None:
        super().__init__(stream)
        self.path = path


def _construct_map(loader: _MarkingLoader, node: yaml.MappingNode) -> MarkedMap:
    result = MarkedMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    seen: dict[object, int] = {}
    # Duplicates are checked on the keys as written; merge keys (<<) may legitimately repeat
    # keys that the mapping then overrides.
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:
            raise FileFormatError(
                loader.path, "a mapping key must be a plain value", line
            ) from None
        if first is not None:
            raise FileFormatError(
                loader.path, f"duplicate key {key!r} (first on line {first})", line
            )
        seen[key] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _MarkingLoader, node: yaml.SequenceNode) -> MarkedSeq:
    result = MarkedSeq(loader.construct_object(item, deep=True) for item in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [item.start_mark.line + 1 for item in node.value]
    return result


def _construct_vault(loader: _MarkingLoader, node: yaml.ScalarNode) -> VaultValue:
    return VaultValue(loader.construct_scalar(node))


def _construct_unsafe(loader: _MarkingLoader, node: yaml.Node) -> object:
    # Ansible's !unsafe only marks a value as not-a-template; the value itself is plain.
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return _construct_seq(loader, node)
    if isinstance(node, yaml.MappingNode):
        return _construct_map(loader, node)
    raise FileFormatError(loader.path, "unsupported !unsafe value", node.start_mark.line + 1)


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_MarkingLoader.add_constructor("!vault", _construct_vault)
_MarkingLoader.add_constructor("!unsafe", _construct_unsafe)


def load_yaml(text: str, path: str) -> object:
    """One YAML document with duplicate keys refused; mappings and sequences carry line numbers."""
    loader = _MarkingLoader(text, path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise FileFormatError(path, message, line) from None
        raise FileFormatError(path, f"not valid YAML: {message}", line) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


# --- groups shared by both inventory formats ----------------------------------------------------


@dataclass
class GroupTree:
    """Groups with their direct hosts and child groups, in the order the file declared them."""

    path: str
    direct_hosts: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    edge_lines: dict[tuple[str, str], int | None] = field(default_factory=dict)

    def add_group(self, name: str) -> None:
        self.direct_hosts.setdefault(name, [])
        self.children.setdefault(name, [])

    def add_host(self, group: str, host: str) -> None:
        self.add_group(group)
        if host not in self.direct_hosts[group]:
            self.direct_hosts[group].append(host)

    def add_child(self, parent: str, child: str, line: int | None) -> None:
        self.add_group(parent)
        self.add_group(child)
        if child not in self.children[parent]:
            self.children[parent].append(child)
            self.edge_lines[(parent, child)] = line

    def groups_of(self, host: str) -> list[str]:
        """The groups that list the host directly."""
        return [group for group, hosts in self.direct_hosts.items() if host in hosts]

    def check_acyclic(self) -> None:
        """Refuse a group that is (through its children) its own descendant."""
        done: set[str] = set()
        for root in self.children:
            self._visit(root, [], done)

    def _visit(self, group: str, trail: list[str], done: set[str]) -> None:
        if group in done:
            return
        if group in trail:
            cycle = [*trail[trail.index(group) :], group]
            line = self.edge_lines.get((trail[-1], group))
            raise FileFormatError(self.path, "group cycle: " + " → ".join(cycle), line)
        trail.append(group)
        for child in self.children.get(group, ()):
            self._visit(child, trail, done)
        trail.pop()
        done.add(group)

    def parents(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {name: [] for name in self.children}
        for parent, kids in self.children.items():
            for child in kids:
                result[child].append(parent)
        return result

    def ancestors(self, group: str, parents: Mapping[str, Sequence[str]]) -> set[str]:
        found: set[str] = set()
        pending = list(parents.get(group, ()))
        while pending:
            name = pending.pop()
            if name not in found:
                found.add(name)
                pending.extend(parents.get(name, ()))
        return found

    def depths(self, parents: Mapping[str, Sequence[str]]) -> dict[str, int]:
        """Longest distance from a top group: parents' variables apply before their children's."""
        memo: dict[str, int] = {}

        def depth(name: str) -> int:
            if name not in memo:
                memo[name] = 1 + max((depth(p) for p in parents.get(name, ())), default=-1)
            return memo[name]

        for name in self.children:
            depth(name)
        return memo

    def members(self, host_order: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Every group's hosts, its children's included, in inventory order."""
        position = {name: index for index, name in enumerate(host_order)}
        result: dict[str, tuple[str, ...]] = {}

        def collect(name: str) -> set[str]:
            found = set(self.direct_hosts.get(name, ()))
            for child in self.children.get(name, ()):
                found |= collect(child)
            return found

        for name in self.children:
            result[name] = tuple(sorted(collect(name), key=position.__getitem__))
        return result


# --- interlock's own YAML -------------------------------------------------------------------------


def read_interlock_yaml(data: MarkedMap, path: Path) -> Inventory:
    # Relative key and known_hosts paths are relative to the inventory file, not to the cwd.
    return _InterlockReader(str(path), path.absolute().parent).read(data)


class _InterlockReader:
    def __init__(self, path: str, base: Path) -> None:
        self.path = path
        self.base = base

    def fail(self, message: str, line: int | None) -> FileFormatError:
        return FileFormatError(self.path, message, line)

    def read(self, data: MarkedMap) -> Inventory:
        # Top-level `x-...` keys hold YAML anchors for reuse (as in compose files) and are ignored.
        self.check_keys(
            data, (*_TOP_KEYS, *(k for k in data if str(k).startswith("x-"))), "the inventory"
        )
        defaults = self.mapping(data, "defaults", optional=True)
        self.check_keys(defaults, _DEFAULT_KEYS, "defaults")
        default_port = self.port(defaults, "port", 22)
        default_user = self.user(defaults, "user", "root")
        default_key = self.path_value(defaults, "key")
        tree = GroupTree(self.path)
        groups_data = self.mapping(data, "groups", optional=True)
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
        hosts_data = self.mapping(data, "hosts", optional=False)
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

    def check_keys(self, data: MarkedMap, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                expected = ", ".join(k for k in allowed if not k.startswith("x-"))
                raise self.fail(
                    f"{where}: unknown key {key!r} (expected one of: {expected})",
                    data.line_of(key),
                )

    def nested_mapping(self, value: object, where: str, line: int) -> MarkedMap:
        if value is None:
            empty = MarkedMap()
            empty.line, empty.key_lines = line, {}
            return empty
        if not isinstance(value, MarkedMap):
            raise self.fail(f"{where} must be a mapping, not {_kind(value)}", line)
        return value

    def mapping(self, data: MarkedMap, key: str, *, optional: bool) -> MarkedMap:
        if key not in data:
            if not optional:
                raise self.fail(f"missing required key {key!r}", data.line)
            return self.nested_mapping(None, key, data.line)
        return self.nested_mapping(data[key], key, data.line_of(key))

    def variables(self, data: MarkedMap, where: str) -> MarkedMap:
        values = self.mapping(data, "vars", optional=True)
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
        labels = self.mapping(data, "labels", optional=True)
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
        section = self.mapping(data, "loadbalancers", optional=True)
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


def is_address(value: str) -> bool:
    """An IP address or a DNS name (labels of letters, digits, '-' and '_')."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(_DNS_NAME_RE.fullmatch(value)) and len(value) <= 253
    return True


_DNS_NAME_RE = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)


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
