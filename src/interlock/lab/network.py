"""The lab's network: a bridge in the root namespace and one namespace plus veth per host.

All link changes go through one `ip -batch` process: hundreds of hosts cost one command, not
hundreds. A host configures its own address from inside its namespace while it boots.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from interlock.lab.errors import LabError
from interlock.lab.spec import LabHost, LabSpec

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
PR_SET_PDEATHSIG = 1


def up_commands(spec: LabSpec, hosts: Sequence[LabHost]) -> list[str]:
    lines = [
        f"link add {spec.bridge} type bridge",
        f"addr add {spec.gateway}/{spec.network.prefixlen} dev {spec.bridge}",
        f"link set {spec.bridge} up",
    ]
    for host in hosts:
        lines += [
            f"netns add {host.netns}",
            f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
            f"link set {host.veth} master {spec.bridge} up",
        ]
    return lines


def down_commands(netns: Iterable[str], links: Iterable[str]) -> list[str]:
    return [f"netns del {name}" for name in netns] + [f"link del {name}" for name in links]


def run_batch(lines: Sequence[str], *, force: bool = False) -> None:
    """Run `ip` commands in one process; with `force`, carry on past errors (used by teardown)."""
    if not lines:
        return
    argv = ["ip", *(["-force"] if force else []), "-batch", "-"]
    result = subprocess.run(
        argv,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_die_with_parent,
    )
    if result.returncode != 0 and not force:
        raise LabError(f"ip -batch failed: {result.stderr.strip()}")


def _die_with_parent() -> None:
    # If the caller is killed half way, `ip` must not go on creating namespaces after a
    # `down` that ran meanwhile has removed the rest.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def netns_names(prefix: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))
    except FileNotFoundError:
        return []


def link_names(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir(SYS_NET) if name.startswith(prefix))


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def netns_inodes(names: Iterable[str]) -> dict[tuple[int, int], str]:
    """(device, inode) of each named network namespace, to match against /proc/PID/ns/net."""
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            info = (NETNS_DIR / name).stat()
            found[(info.st_dev, info.st_ino)] = name
    return found


def overlapping_routes(subnet: str, own_device: str) -> list[str]:
    """Routes of other devices that overlap `subnet` (another lab, or a real network)."""
    result = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"ip route failed: {result.stderr.strip()}")
    return parse_overlapping_routes(result.stdout, subnet, own_device)


def parse_overlapping_routes(text: str, subnet: str, own_device: str) -> list[str]:
    network = ipaddress.IPv4Network(subnet)
    overlaps = []
    for route in json.loads(text or "[]"):
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if (
            dst in ("", "default")
            or dev == own_device
            or route.get("type") in ("local", "broadcast")
        ):
            continue
        try:
            other = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if other.overlaps(network):
            overlaps.append(f"{dst} dev {dev}")
    return overlaps


def release_netns_dir() -> None:
    """`ip netns add` leaves /run/netns mounted on itself; unmount it once no namespace is left."""
    if not NETNS_DIR.is_dir() or any(NETNS_DIR.iterdir()):
        return
    while str(NETNS_DIR) in mount_points():
        if subprocess.run(["umount", str(NETNS_DIR)], capture_output=True, check=False).returncode:
            return


def mount_points() -> list[str]:
    """Mount points of this mount namespace (a bind mount onto itself included, unlike ismount)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return parse_mount_points(handle.read())


def parse_mount_points(text: str) -> list[str]:
    # Field 5 is the mount point, with spaces and such escaped as octal (\040).
    points = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points
