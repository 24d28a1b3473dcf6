"""The machine-side cgroup of each systemd lab host: the root of that host's cgroup namespace.

Each host's systemd manages its own subtree below it. They live under one directory per lab in the
machine's cgroup2 hierarchy (/sys/fs/cgroup itself on a unified machine, /sys/fs/cgroup/unified on
a hybrid one) and are removed, deepest first, once the host's processes are gone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "interlock-lab"


def cgroup2_root(base: Path = CGROUP_ROOT) -> Path | None:
    for candidate in (base, base / "unified"):
        if (candidate / "cgroup.subtree_control").exists():
            return candidate
    return None


def lab_cgroup(lab: str, base: Path = CGROUP_ROOT) -> Path | None:
    root = cgroup2_root(base)
    return None if root is None else root / PARENT / lab


def host_cgroup(lab: str, host: str, base: Path = CGROUP_ROOT) -> Path | None:
    parent = lab_cgroup(lab, base)
    return None if parent is None else parent / host


def remove_lab_cgroups(lab: str, base: Path = CGROUP_ROOT) -> list[str]:
    """rmdir the lab's cgroups deepest first; return those that stay (they still hold tasks)."""
    top = lab_cgroup(lab, base)
    if top is None or not top.exists():
        return []
    kept = []
    for directory, _subdirs, _files in sorted(os.walk(top), key=lambda e: -e[0].count("/")):
        try:
            os.rmdir(directory)
        except OSError:
            kept.append(directory)
    with contextlib.suppress(OSError):
        os.rmdir(top.parent)  # fails while another lab still has cgroups there: fine
    return kept
