"""Ansible inventories as operators already have them: INI or YAML files, with the `host_vars/`
and `group_vars/` directories beside them.

Ansible's rules are kept where they decide which hosts and values come out: host ranges
(`compute[01:20].example`, `stor-[a:c]`, `[1:9:2]`), `host:port`, `[group:vars]` and
`[group:children]` (a child must be declared somewhere in the file), the implicit `all` and
`ungrouped` groups, inline INI values read as Python literals, and variable precedence (group
variables by depth, then priority, then name; `group_vars/` files above the inventory's own group
variables; host variables above both). `ansible_host`, `ansible_port`, `ansible_user` and
`ansible_ssh_private_key_file` become the host's address, port, user and key; every other variable
is kept in `Inventory.host_vars`, never in the `Host` that plans and journals store. Templates
(`{{ ... }}`) are not evaluated: a connection variable that uses one is an error rather than a
wrong address.
"""

from __future__ import annotations

import ast
import getpass
import ipaddress
import os
import re
import shlex
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from interlock.documents import MarkedMap, load_yaml, read_text
from interlock.errors import FileFormatError
from interlock.fleet.inventory import (
    MAX_HOSTS,
    NAME_RE,
    USER_RE,
    GroupTree,
    Host,
    Inventory,
    is_address,
)
from interlock.observe.plain_text import printable

ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
CONNECTION_VARS = frozenset(ADDRESS_VARS + PORT_VARS + USER_VARS + KEY_VARS)
VARS_FILE_SUFFIXES = ("", ".yml", ".yaml", ".json")
_YAML_GROUP_KEYS = ("hosts", "vars", "children")
_MAX_DIGITS = 9  # range bounds: more is never a host number

_SECTION_RE = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
_GROUP_LINE_RE = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")
_RANGE_RE = re.compile(r"\[([^\]]*)\]")
_HOST_PORT_RE = re.compile(r"(?P<host>.+?):(?P<port>\d+)")
_BRACKETED_IPV6_RE = re.compile(r"\[(?P<host>[0-9A-Fa-f:.]+)\](?::(?P<port>\d+))?")


def read_ini(text: str, path: Path) -> Inventory:
    model = _Model(path)
    model.read_ini(text)
    return model.build()


def read_yaml(data: MarkedMap, path: Path) -> Inventory:
    model = _Model(path)
    for name, spec in data.items():
        model.read_yaml_group(name, spec, data.line_of(name), parent=None)
    return model.build()


@dataclass(frozen=True)
class _Setting:
    """A variable's value and where it was set, so a bad value can be traced to its line."""

    value: object
    path: str
    line: int | None


@dataclass
class _Model:
    path: Path
    tree: GroupTree = field(init=False)
    host_order: list[str] = field(default_factory=list)
    host_lines: dict[str, int] = field(default_factory=dict)
    host_vars: dict[str, dict[str, _Setting]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, _Setting]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tree = GroupTree(str(self.path))
        self.tree.add_group("all")

    def fail(self, message: str, line: int | None) -> FileFormatError:
        return FileFormatError(str(self.path), message, line)

    def add_host(self, group: str, name: str, line: int) -> None:
        if name not in self.host_vars:
            if len(self.host_order) >= MAX_HOSTS:
                raise self.fail(f"more than {MAX_HOSTS} hosts in one inventory", line)
            self.host_order.append(name)
            self.host_lines[name] = line
            self.host_vars[name] = {}
        self.tree.add_host(group, name)

    def group(self, name: object, line: int) -> str:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(
                f"group name {name!r} is not supported "
                "(letters, digits, '_', '.', '-'; not starting with '.' or '-')",
                line,
            )
        self.tree.add_group(name)
        self.group_vars.setdefault(name, {})
        return name

    # --- INI -------------------------------------------------------------------------------

    def read_ini(self, text: str) -> None:
        # Undeclared groups named in [x:children] or [x:vars], with the line of first mention;
        # Ansible accepts forward references and fails on those never declared.
        pending_children: dict[str, tuple[str, int]] = {}
        pending_vars: dict[str, int] = {}
        declared: set[str] = {"all", "ungrouped"}
        group, kind = "ungrouped", "hosts"
        self.group("ungrouped", 1)
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            section = _SECTION_RE.fullmatch(line)
            if section:
                group = self.group(section[1], number)
                kind = section[2] or "hosts"
                if kind not in ("hosts", "vars", "children"):
                    raise self.fail(
                        f"section [{line[1 : line.index(']')]}] has unknown type {kind!r}", number
                    )
                if kind == "vars":
                    if group not in declared:
                        pending_vars.setdefault(group, number)
                else:
                    declared.add(group)
                    pending_children.pop(group, None)
                    pending_vars.pop(group, None)
                continue
            if line.startswith("["):
                raise self.fail(f"invalid section header {line!r}", number)
            if kind == "hosts":
                self.read_ini_host_line(group, line, number)
            elif kind == "vars":
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise self.fail(f"expected key=value in [{group}:vars], got {line!r}", number)
                self.set_var(self.group_vars[group], key.strip(), _literal(value.strip()), number)
            else:
                child_line = _GROUP_LINE_RE.fullmatch(line)
                if not child_line:
                    raise self.fail(
                        f"expected a group name in [{group}:children], got {line!r}", number
                    )
                child = self.group(child_line[1], number)
                self.tree.add_child(group, child, number)
                if child not in declared:
                    pending_children.setdefault(child, (group, number))
        if pending_children:
            child, (parent, number) = next(iter(pending_children.items()))
            raise self.fail(
                f"section [{parent}:children] includes undefined group {child!r}", number
            )
        if pending_vars:
            name, number = next(iter(pending_vars.items()))
            raise self.fail(f"section [{name}:vars] is for undefined group {name!r}", number)

    def read_ini_host_line(self, group: str, line: str, number: int) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.fail(f"cannot parse host line {line!r}: {exc}", number) from None
        if not tokens:
            return
        names, port = self.expand_host_pattern(tokens[0], number)
        assignments: list[tuple[str, object]] = []
        for token in tokens[1:]:
            key, sep, text = token.partition("=")
            if not sep or not key:
                raise self.fail(f"expected key=value host variable, got {token!r}", number)
            assignments.append((key, _literal(text)))
        for name in names:
            self.add_host(group, name, number)
            if port is not None:
                self.set_var(self.host_vars[name], "ansible_port", port, number)
            for key, value in assignments:
                self.set_var(self.host_vars[name], key, value, number)

    # --- YAML ------------------------------------------------------------------------------

    def read_yaml_group(self, name: object, spec: object, line: int, parent: str | None) -> None:
        group = self.group(name, line)
        if parent is not None:
            self.tree.add_child(parent, group, line)
        if spec is None:
            return
        if not isinstance(spec, MarkedMap):
            raise self.fail(f"group {group} must be a mapping of hosts, vars and children", line)
        for key in spec:
            if key not in _YAML_GROUP_KEYS:
                raise self.fail(
                    f"group {group}: unknown key {key!r} (expected hosts, vars or children)",
                    spec.line_of(key),
                )
        hosts = self.yaml_mapping(spec, "hosts", group)
        for pattern, host_vars in hosts.items():
            host_line = hosts.line_of(pattern)
            if not isinstance(pattern, str):
                raise self.fail(
                    f"group {group}: host names must be strings, not {pattern!r}", host_line
                )
            names, port = self.expand_host_pattern(pattern, host_line)
            if host_vars is None:
                host_vars = self.yaml_mapping(hosts, pattern, group)
            if not isinstance(host_vars, MarkedMap):
                raise self.fail(f"host {pattern}: variables must be a mapping", host_line)
            for host in names:
                self.add_host(group, host, host_line)
                if port is not None:
                    self.set_var(self.host_vars[host], "ansible_port", port, host_line)
                for key, value in host_vars.items():
                    self.set_var(self.host_vars[host], key, value, host_vars.line_of(key))
        group_vars = self.yaml_mapping(spec, "vars", group)
        for key, value in group_vars.items():
            self.set_var(self.group_vars[group], key, value, group_vars.line_of(key))
        children = self.yaml_mapping(spec, "children", group)
        for child, child_spec in children.items():
            self.read_yaml_group(child, child_spec, children.line_of(child), parent=group)

    def yaml_mapping(self, spec: MarkedMap, key: str, group: str) -> MarkedMap:
        value = spec.get(key)
        if value is None:
            empty = MarkedMap()
            empty.line, empty.key_lines = spec.line, {}
            return empty
        if not isinstance(value, MarkedMap):
            raise self.fail(f"group {group}: {key} must be a mapping", spec.line_of(key))
        return value

    # --- shared ----------------------------------------------------------------------------

    def set_var(
        self, target: dict[str, _Setting], key: object, value: object, line: int | None
    ) -> None:
        if not isinstance(key, str) or not key:
            raise self.fail(f"variable names must be strings, not {key!r}", line)
        target[key] = _Setting(value, str(self.path), line)

    def expand_host_pattern(self, pattern: str, line: int) -> tuple[list[str], int | None]:
        name, port = _split_port(pattern)
        if name.endswith(":"):
            raise self.fail(f"host {pattern!r} ends in ':' without a port", line)
        try:
            names = list(expand_host_range(name))
        except ValueError as exc:
            raise self.fail(f"host '{printable(pattern, 80)}': {exc}", line) from None
        for host in names:
            if not (NAME_RE.fullmatch(host) or _is_ip(host)):
                raise self.fail(f"invalid host name {host!r}", line)
        return names, port

    def build(self) -> Inventory:
        tree = self.tree
        tree.add_group("ungrouped")
        parents = tree.parents()
        for name in list(tree.children):
            if name != "all" and not parents[name]:
                tree.add_child("all", name, None)
        for host in self.host_order:
            groups = tree.groups_of(host)
            if set(groups) <= {"all", "ungrouped"}:
                tree.add_host("ungrouped", host)
            elif "ungrouped" in groups:
                tree.direct_hosts["ungrouped"].remove(host)
        tree.check_acyclic()
        parents = tree.parents()
        depths = tree.depths(parents)
        base = self.path.parent
        file_group_vars = {g: _vars_files(base / "group_vars", g) for g in tree.children}

        def order(group: str) -> tuple[int, int, str]:
            return (depths[group], self.priority(group), group)

        hosts: dict[str, Host] = {}
        host_vars: dict[str, Mapping[str, object]] = {}
        default_user = _local_user()
        for name in self.host_order:
            direct = tree.groups_of(name)
            member_of = set(direct)
            for group in direct:
                member_of |= tree.ancestors(group, parents)
            member_of.discard("all")
            ordered = sorted(member_of, key=order)
            merged: dict[str, _Setting] = dict(self.group_vars.get("all", {}))
            for group in ordered:
                merged.update(self.group_vars.get(group, {}))
            merged.update(file_group_vars["all"])
            for group in ordered:
                merged.update(file_group_vars[group])
            merged.update(self.host_vars[name])
            merged.update(_vars_files(base / "host_vars", name))
            hosts[name] = self.host(name, merged, tuple(sorted(member_of)), default_user)
            host_vars[name] = {k: s.value for k, s in merged.items() if k not in CONNECTION_VARS}
        members = tree.members(self.host_order)
        members.pop("all", None)
        return Inventory(path=str(self.path), hosts=hosts, groups=members, host_vars=host_vars)

    def priority(self, group: str) -> int:
        setting = self.group_vars.get(group, {}).get("ansible_group_priority")
        if setting is None:
            return 1
        try:
            return int(str(setting.value))
        except ValueError:
            raise FileFormatError(
                setting.path,
                f"group {group}: ansible_group_priority must be an integer, not {setting.value!r}",
                setting.line,
            ) from None

    def host(
        self, name: str, settings: dict[str, _Setting], groups: tuple[str, ...], user: str
    ) -> Host:
        address = _connection_value(name, settings, ADDRESS_VARS)
        port = _connection_value(name, settings, PORT_VARS)
        login = _connection_value(name, settings, USER_VARS)
        key = _connection_value(name, settings, KEY_VARS)
        if address is not None and not is_address(str(address.value)):
            raise _bad(name, address, "an IP address or DNS name")
        if port is not None and not _is_port(port.value):
            raise _bad(name, port, "a port number (1-65535)")
        if login is not None and not USER_RE.fullmatch(str(login.value)):
            raise _bad(name, login, "a user name")
        if key is not None and not (isinstance(key.value, str) and key.value.strip()):
            raise _bad(name, key, "a file path")
        if address is None and not is_address(name):
            raise self.fail(f"host {name} has no usable address", self.host_lines[name])
        return Host(
            name=name,
            address=str(address.value) if address else name,
            port=int(str(port.value)) if port else 22,
            user=str(login.value) if login else user,
            key=os.path.abspath(os.path.expanduser(str(key.value))) if key else None,
            groups=groups,
        )


def expand_host_range(pattern: str) -> Iterator[str]:
    """Ansible's host ranges: `web[01:20]`, `db-[a:f]`, `n[1:9:2]`, several per name.

    At most MAX_HOSTS names, counted before any is made: `web[0:99999999]` is a mistake that
    would otherwise fill the memory.
    """
    count = 1
    for spec in _RANGE_RE.findall(pattern):
        count *= len(_parse_range(spec))
        if count > MAX_HOSTS:
            raise ValueError(f"the range names more than {MAX_HOSTS} hosts")
    return _expand(pattern)


def _expand(pattern: str) -> Iterator[str]:
    match = _RANGE_RE.search(pattern)
    if match is None:
        if "[" in pattern or "]" in pattern:
            raise ValueError("unbalanced '[' or ']' in host range")
        yield pattern
        return
    head, tail = pattern[: match.start()], pattern[match.end() :]
    for value in _parse_range(match[1]).values():
        yield from _expand(head + value + tail)


@dataclass(frozen=True)
class _Range:
    """One `[begin:end:step]`: numbers (zero-padded to `width`) or letters, counted lazily."""

    steps: range
    width: int = 0
    letters: bool = False

    def __len__(self) -> int:
        return len(self.steps)

    def values(self) -> Iterator[str]:
        for n in self.steps:
            yield string.ascii_letters[n] if self.letters else str(n).zfill(self.width)


def _parse_range(spec: str) -> _Range:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError("a host range is [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError("a host range needs an end")
    if not step_text.isdigit() or len(step_text) > _MAX_DIGITS or int(step_text) < 1:
        raise ValueError(f"range step must be a positive integer, not {step_text!r}")
    step = int(step_text)
    if begin.isdigit() and end.isdigit():
        if max(len(begin), len(end)) > _MAX_DIGITS:
            raise ValueError(f"range bounds have at most {_MAX_DIGITS} digits")
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(end) != width:
            raise ValueError("zero-padded range bounds must have the same width")
        if int(begin) > int(end):
            raise ValueError("range begins after its end")
        return _Range(range(int(begin), int(end) + 1, step), width)
    if (
        len(begin) == 1
        and len(end) == 1
        and begin in string.ascii_letters
        and end in string.ascii_letters
    ):
        first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
        if first > last:
            raise ValueError("range begins after its end")
        return _Range(range(first, last + 1, step), letters=True)
    raise ValueError(f"[{printable(spec, 40)}] is neither a numeric nor a letter range")


def _split_port(pattern: str) -> tuple[str, int | None]:
    bracketed = _BRACKETED_IPV6_RE.fullmatch(pattern)
    if bracketed and _is_ip(bracketed["host"]):
        return bracketed["host"], int(bracketed["port"]) if bracketed["port"] else None
    if _is_ip(pattern):
        return pattern, None
    with_port = _HOST_PORT_RE.fullmatch(pattern)
    # A ':' left after removing ranges means an IPv6-like name, not a port.
    if with_port and ":" not in _RANGE_RE.sub("", with_port["host"]):
        return with_port["host"], int(with_port["port"])
    return pattern, None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_port(value: object) -> bool:
    if isinstance(value, bool):
        return False
    text = str(value)
    return text.isdigit() and 0 < int(text) < 65536


def _literal(text: str) -> object:
    """An INI value as Ansible reads it: a Python literal when it is one, else the text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    return _plain(value)


def _plain(value: object) -> object:
    if isinstance(value, tuple | list | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is Ellipsis or isinstance(value, complex):
        return str(value)
    return value


def _connection_value(
    host: str, settings: Mapping[str, _Setting], names: tuple[str, ...]
) -> _Setting | None:
    for name in names:
        setting = settings.get(name)
        if setting is not None and setting.value is not None:
            if "{{" in str(setting.value) or "{%" in str(setting.value):
                raise FileFormatError(
                    setting.path,
                    f"host {host}: {name} uses a template, which interlock does not evaluate",
                    setting.line,
                )
            return setting
    return None


def _bad(host: str, setting: _Setting, expected: str) -> FileFormatError:
    return FileFormatError(
        setting.path, f"host {host}: expected {expected}, not {setting.value!r}", setting.line
    )


def _vars_files(directory: Path, name: str) -> dict[str, _Setting]:
    """Variables from `group_vars/NAME` or `host_vars/NAME` (a file with or without a YAML/JSON
    suffix, or a directory of such files read in name order)."""
    found: list[Path] = []
    entry = directory / name
    if entry.is_dir():
        for root, dirs, files in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(
                Path(root, f)
                for f in sorted(files)
                if not f.startswith(".") and Path(f).suffix.lower() in VARS_FILE_SUFFIXES
            )
    else:
        found.extend(
            p for p in (directory / f"{name}{s}" for s in VARS_FILE_SUFFIXES) if p.is_file()
        )
    settings: dict[str, _Setting] = {}
    for path in found:
        data = load_yaml(read_text(path), str(path))
        if data is None:
            continue
        if not isinstance(data, MarkedMap):
            raise FileFormatError(str(path), "a variables file must be a YAML mapping", 1)
        for key, value in data.items():
            if not isinstance(key, str):
                raise FileFormatError(
                    str(path), f"variable names must be strings, not {key!r}", data.line_of(key)
                )
            settings[key] = _Setting(value, str(path), data.line_of(key))
    return settings


def _local_user() -> str:
    # Like ssh and Ansible without ansible_user: log in as the user running the command.
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"
