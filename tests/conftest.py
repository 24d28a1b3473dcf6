"""Suite-wide guards: tests must leave no network namespace, overlay mount or lab process behind,
and must not change the machine's /tmp, sysctls or cgroup mounts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _leftovers() -> set[str]:
    found = set()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    found |= {f"netns {line.split()[0]}" for line in netns.stdout.splitlines() if line.strip()}
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "overlay" or fields[1].startswith("/run/netns"):
            found.add(f"mount {fields[1]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = _leftovers()
    yield
    left = _leftovers() - before
    assert not left, f"tests left these behind: {sorted(left)}"


# What systemd's boot-time work would change if it ever ran against the machine instead of a lab
# host's own root file system: it empties /tmp, writes sysctls and mounts cgroup hierarchies.
SYSCTLS = (
    "kernel/core_pattern",
    "kernel/sysrq",
    "kernel/kptr_restrict",
    "kernel/pid_max",
    "kernel/printk",
    "fs/protected_fifos",
    "fs/protected_hardlinks",
    "fs/protected_regular",
    "fs/protected_symlinks",
    "fs/suid_dumpable",
    "fs/inotify/max_user_instances",
    "net/core/default_qdisc",
    "net/ipv4/ping_group_range",
)
# Entries of /tmp older than this are nobody's scratch files of the moment: they must survive
# the suite (other processes on the machine may come and go with their own newer files).
SETTLED_SECONDS = 600


@dataclass(frozen=True)
class MachineView:
    tmp_inode: int
    tmp_settled: frozenset[str]
    sysctls: dict[str, str]
    cgroup_mounts: tuple[str, ...]


def _machine_view(tmp: Path = Path("/tmp")) -> MachineView:
    settled = set()
    now = time.time()
    for entry in os.scandir(tmp):
        with contextlib.suppress(OSError):
            if now - entry.stat(follow_symlinks=False).st_mtime > SETTLED_SECONDS:
                settled.add(entry.name)
    sysctls = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            sysctls[name] = (Path("/proc/sys") / name).read_text().strip()
    cgroups = tuple(
        sorted(
            line
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[2] in ("cgroup", "cgroup2")
        )
    )
    return MachineView(tmp.stat().st_ino, frozenset(settled), sysctls, cgroups)


@pytest.fixture(scope="session", autouse=True)
def machine_untouched() -> Iterator[None]:
    """The machine's /tmp, sysctls and cgroup mounts are the same after the suite as before."""
    before = _machine_view()
    canary = Path(tempfile.mkdtemp(prefix="interlock-guard-", dir="/tmp"))
    month_ago = time.time() - 30 * 86400
    os.utime(canary, (month_ago, month_ago))
    yield
    after = _machine_view()
    problems = []
    if after.tmp_inode != before.tmp_inode:
        problems.append("/tmp was replaced")
    # Other processes on a shared machine may remove a file of their own now and then; a boot-time
    # cleanup removes everything, the canary (old, and nobody else's) first of all.
    gone = sorted(before.tmp_settled - after.tmp_settled)
    if not canary.exists():
        problems.append(f"entries of /tmp disappeared, among them {canary}: {gone}")
    elif len(gone) > max(2, len(before.tmp_settled) // 2):
        problems.append(f"most entries of /tmp disappeared: {gone}")
    if after.sysctls != before.sysctls:
        problems.append(f"sysctls changed: {before.sysctls} -> {after.sysctls}")
    if after.cgroup_mounts != before.cgroup_mounts:
        problems.append(f"cgroup mounts changed: {before.cgroup_mounts} -> {after.cgroup_mounts}")
    shutil.rmtree(canary, ignore_errors=True)
    assert not problems, "; ".join(problems)
