"""The fleet inventory: hosts, groups and load balancers.

Two sources feed the same records: interlock's own YAML (`interlock_inventory`, strict: every
mistake is an error with file and line) and Ansible inventories as operators already have them
(`ansible_inventory`). `inventory_file.load_inventory` tells them apart, so one `-i` option takes
either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from interlock.errors import FileFormatError
from interlock.fleet.host_pattern import select_hosts

# Names end up in patterns, file names and remote commands: no shell or pattern metacharacters.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
RESERVED_GROUPS = frozenset({"all", "ungrouped"})
# Hosts in one inventory, and named by one host range: more is a mistake (`web[0:99999999]`
# took 3.2 GB before it was stopped), refused before anything is built.
MAX_HOSTS = 10_000
DEFAULT_INVENTORY = "/etc/interlock/inventory.yaml"


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
