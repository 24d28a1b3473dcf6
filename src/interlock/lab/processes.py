"""Processes seen from the machine's side: liveness, children, and membership of lab namespaces."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[str, int, int]:
    """(state, parent pid, start time in clock ticks since boot) from /proc/PID/stat.

    The command name is in parentheses and may itself contain spaces or parentheses, so the
    fields are counted from the last `)`.
    """
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[19])


def stat(pid: int) -> tuple[str, int, int] | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (a zombie has exited: only its parent has not collected it yet)."""
    info = stat(pid)
    return info is not None and info[0] not in ("Z", "X")


def snapshot(pids: Iterable[int]) -> dict[int, int]:
    """pid -> start time of the live ones: identifies them even after their pids are reused."""
    found = {}
    for pid in pids:
        info = stat(pid)
        if info is not None and info[0] not in ("Z", "X"):
            found[pid] = info[2]
    return found


def survivors(before: Mapping[int, int]) -> list[int]:
    """The processes of a `snapshot` that still run (same pid, same start time)."""
    return sorted(pid for pid, started in snapshot(before).items() if before[pid] == started)


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def pid_namespace(pid: int) -> int | None:
    """The inode of the PID namespace `pid` lives in (None once it is gone)."""
    try:
        return os.stat(PROC / str(pid) / "ns" / "pid").st_ino
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def members(namespaces: Mapping[tuple[int, int], str]) -> dict[int, str]:
    """Live processes whose network namespace is one of `namespaces`: pid -> namespace name."""
    found: dict[int, str] = {}
    if not namespaces:
        return found
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            info = os.stat(f"{entry.path}/ns/net")
        except OSError:
            continue  # gone, or a zombie (which no longer holds a namespace)
        name = namespaces.get((info.st_dev, info.st_ino))
        if name is not None:
            found[int(entry.name)] = name
    return found


def with_mount_option(marker: str) -> list[int]:
    """Live processes whose mount namespace has a mount whose options contain `marker`."""
    found = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/mountinfo", encoding="utf-8", errors="replace") as handle:
                if marker in handle.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_all(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
