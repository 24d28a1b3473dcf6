"""What a lab is made of: its size and place (`LabSpec`) and the hosts that follow from it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from interlock.errors import UsageError

DEFAULT_DIR = Path("/var/tmp/interlock-lab")
DEFAULT_NAME = "ilab"
DEFAULT_SUBNET = "10.200.0.0/16"

API_PORT = 8080
LB_PORT = 80
LB_ADMIN_PORT = 9999
ADMIN_SOCKET = "/run/haproxy/admin.sock"

# Trees each host sees through its own overlay; the lab directory must lie outside all of them
# (and outside the per-host tmpfs mounts) or hosts could not reach the shared keys and configs.
OVERLAID_TREES = ("/etc", "/var/lib", "/var/log", "/usr/sbin")
# With package overlays each host also has its own /usr (replacing the /usr/sbin layer), /opt and
# /var/cache, so dpkg and apt-get change only that host: /var/lib holds apt's lists, /var/cache
# apt's archives and debconf's answers. dpkg's database sits on a snapshot of the machine's
# (DPKG_SNAPSHOT), not on the live one: dpkg running on the machine meanwhile would otherwise
# show the hosts its half-done transaction ("dpkg was interrupted").
PACKAGE_TREES = ("/etc", "/var/lib", "/var/lib/dpkg", "/var/log", "/var/cache", "/usr", "/opt")
DPKG_DIR = "/var/lib/dpkg"
PRIVATE_TMPFS = ("/run", "/root")

# A Linux bridge takes at most 1024 ports.
MAX_HOSTS = 1000
AZS = ("az1", "az2", "az3")
# Kinds of host: sysv hosts run the machine's programs under a small init script; systemd hosts
# boot systemd as PID 1 from their own Debian root file system.
SYSV = "sysv"
SYSTEMD = "systemd"


_NAME = re.compile(r"[a-z][a-z0-9]{0,7}")
_UNSAFE_PATH = re.compile(r"[\s,:\\]")


@dataclass(frozen=True)
class LabHost:
    """One host of the lab; `pid` is the host-side PID of its sshd once it runs."""

    name: str
    role: str
    address: str
    netns: str
    veth: str
    groups: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    launcher_pid: int | None = None
    kind: str = SYSV


@dataclass(frozen=True)
class LabSpec:
    """Size and placement of a lab. Labs with different names, subnets and directories coexist."""

    directory: Path = DEFAULT_DIR
    name: str = DEFAULT_NAME
    subnet: str = DEFAULT_SUBNET
    hosts: int = 20
    controllers: int = 3
    lbs: int = 1
    pid_namespace: bool = False
    api_delay_ms: int = 0
    package_overlays: bool = False
    # How many hosts (the first ones of `plan()`: load balancers, controllers, computes) boot
    # systemd from their own Debian root file system instead of the machine's sysv-style init.
    systemd: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory).absolute())
        if not _NAME.fullmatch(self.name):
            raise UsageError(
                f"lab name {self.name!r} must be 1-8 lowercase letters or digits, starting with a "
                "letter (it prefixes interface names, which are limited to 15 characters)"
            )
        try:
            network = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise UsageError(f"subnet {self.subnet!r}: {exc}") from None
        if network.prefixlen > 28:
            raise UsageError(f"subnet {self.subnet} is too small for a lab (use /28 or larger)")
        counts = (("hosts", self.hosts), ("controllers", self.controllers), ("lbs", self.lbs))
        for label, count in counts:
            if count < 0:
                raise UsageError(f"--{label} must not be negative")
        if self.hosts < 1 or self.hosts > MAX_HOSTS:
            raise UsageError(f"--hosts must be between 1 and {MAX_HOSTS} (got {self.hosts})")
        if not 0 <= self.systemd <= self.hosts:
            raise UsageError(f"--systemd must be between 0 and --hosts ({self.hosts})")
        if self.controllers + self.lbs > self.hosts:
            raise UsageError(
                f"--hosts {self.hosts} leaves no room for {self.controllers} controllers "
                f"and {self.lbs} load balancers"
            )
        if self.lbs and not self.controllers:
            raise UsageError("load balancers need at least one controller to send traffic to")
        if self.api_delay_ms < 0:
            raise UsageError("the API delay must not be negative")
        if _UNSAFE_PATH.search(str(self.directory)):
            raise UsageError(
                f"lab directory {self.directory} must not contain spaces, commas or colons "
                "(they separate overlay mount options)"
            )
        for tree in self.overlaid_trees + PRIVATE_TMPFS:
            if self.directory == Path(tree) or self.directory.is_relative_to(tree):
                raise UsageError(
                    f"lab directory {self.directory} lies under {tree}, which every lab host "
                    "replaces with its own view; pick a directory elsewhere (e.g. under /var/tmp)"
                )
        last = self.plan()[-1].address
        if ipaddress.IPv4Address(last) >= network.broadcast_address:
            raise UsageError(f"subnet {self.subnet} has too few addresses for {self.hosts} hosts")

    @property
    def overlaid_trees(self) -> tuple[str, ...]:
        return PACKAGE_TREES if self.package_overlays else OVERLAID_TREES

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The bridge's address: the first one of the subnet."""
        return str(self.network.network_address + 1)

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def netns_prefix(self) -> str:
        return f"{self.name}-"

    @property
    def veth_prefix(self) -> str:
        return f"{self.name}-v"

    @property
    def computes(self) -> int:
        return self.hosts - self.controllers - self.lbs

    def plan(self) -> list[LabHost]:
        """Every host with its name, role, address and interface names, in address order."""
        base = self.network.network_address
        hosts: list[LabHost] = []
        offset = 0
        # (role, group, name stem, first address offset, count): lb1 = .5, ctl1 = .11, cmp1 = .21
        # in a /16, so small labs have memorable addresses; a larger role continues after the last.
        roles = (
            ("lb", "lbs", "lb", 5, self.lbs),
            ("controller", "controllers", "ctl", 11, self.controllers),
            ("compute", "computes", "cmp", 21, self.computes),
        )
        for role, group, stem, first, count in roles:
            offset = max(offset, first)
            for number in range(1, count + 1):
                name = f"{stem}{number}"
                labels = {"role": role}
                if role != "lb":
                    labels = {"az": AZS[(number - 1) % len(AZS)], "role": role}
                kind = SYSTEMD if len(hosts) < self.systemd else SYSV
                if kind == SYSTEMD:
                    labels["kind"] = SYSTEMD
                hosts.append(
                    LabHost(
                        name=name,
                        role=role,
                        address=str(base + offset),
                        netns=f"{self.netns_prefix}{name}",
                        veth=f"{self.veth_prefix}{len(hosts) + 1}",
                        groups=(group,),
                        labels=labels,
                        kind=kind,
                    )
                )
                offset += 1
        return hosts
