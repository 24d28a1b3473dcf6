"""Processes still running deleted or replaced executables and libraries, from one pass over /proc.

dpkg installs a new version of a file by renaming it over the old one: the old inode is unlinked
but stays mapped in every process that loaded it. `/proc/<pid>/maps` shows such a mapping with a
`(deleted)` suffix, and with the inode it maps, which no longer matches the file now at that path.
Only executable mappings count (program text and shared libraries), as for needrestart.

The scan reads each process's maps once and decides each distinct (path, inode) once for all
processes: on a host where 2,000 processes share one libc, libc is looked at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# An executable mapping of a file: `start-end perms offset major:minor inode   /path`.
_EXEC_MAPPING = re.compile(
    rb"^[0-9a-f]+-[0-9a-f]+ ..x. [0-9a-f]+ ([0-9a-f]+):([0-9a-f]+) ([0-9]+) +(/[^\n]*)$",
    re.MULTILINE,
)
DELETED_SUFFIX = b" (deleted)"
# Anonymous or special mappings that are not installed files.
_IGNORED_PREFIXES = (b"/memfd:", b"/dev/", b"/SYSV", b"/[", b"/proc/", b"/sys/")
_PYTHON_EXE = re.compile(rb"/python3(\.[0-9]+)?$")


@dataclass(frozen=True)
class MappedFile:
    """One executable file mapping as /proc/<pid>/maps shows it."""

    path: str
    device: int
    inode: int
    deleted: bool


def _mapped_file(fields: tuple[bytes, bytes, bytes, bytes]) -> MappedFile:
    major, minor, inode, raw = fields
    deleted = raw.endswith(DELETED_SUFFIX)
    path = raw[: -len(DELETED_SUFFIX)] if deleted else raw
    device = os.makedev(int(major, 16), int(minor, 16))
    return MappedFile(os.fsdecode(path), device, int(inode), deleted)


def parse_maps(data: bytes) -> set[MappedFile]:
    """The distinct executable file mappings of one `/proc/<pid>/maps`."""
    return {_mapped_file(fields) for fields in set(_EXEC_MAPPING.findall(data))}


@dataclass(frozen=True)
class StaleFile:
    """A mapped file that is not what is on disk now: `deleted`, or `replaced` by a new file."""

    path: str
    why: str
    package: str | None = None

    def describe(self) -> str:
        return f"{self.path} ({self.package})" if self.package else self.path


def judge(mapping: MappedFile, on_disk_inode: int | None) -> StaleFile | None:
    """Pure decision for one mapping, given the inode now at its path (None: nothing there)."""
    if os.fsencode(mapping.path).startswith(_IGNORED_PREFIXES):
        return None
    if mapping.deleted:
        return StaleFile(mapping.path, "deleted" if on_disk_inode is None else "replaced")
    if on_disk_inode is not None and on_disk_inode != mapping.inode:
        return StaleFile(mapping.path, "replaced")
    # Missing although not deleted: the process sees another filesystem (a container or a
    # chroot); nothing can be said about it from here. Device numbers are not compared: btrfs
    # and overlayfs report different ones in maps and in stat for the same file.
    return None


@dataclass(frozen=True)
class ProcessScan:
    """What one pass over /proc found."""

    scanned: int
    stale: dict[int, tuple[StaleFile, ...]]
    pythons: tuple[int, ...]  # processes running a Python interpreter
    foreign: tuple[int, ...]  # not judged: their root or mount namespace could not be read


def _inode(path: bytes) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _view(proc: str, pid: int, own_mnt: str | None) -> tuple[str, bytes] | None:
    """How to see the files the process sees: (its view's name, a prefix for its paths).

    The same mount namespace and root as ours needs no prefix. A process in another one (a
    systemd unit with PrivateTmp= or ProtectSystem= runs in its own) is seen through
    /proc/<pid>/root, which resolves paths in that process's mounts. None: unreadable.
    """
    try:
        root = os.readlink(f"{proc}/{pid}/root")
        mnt = os.readlink(f"{proc}/{pid}/ns/mnt")
    except OSError:
        return None
    if root == "/" and (own_mnt is None or mnt == own_mnt):
        return "", b""
    return f"{mnt} {root}", os.fsencode(f"{proc}/{pid}/root")


def scan_processes(proc: str = "/proc") -> ProcessScan:
    """Read every process's maps once; judge every distinct mapping once."""
    verdicts: dict[tuple[str, tuple[bytes, ...]], tuple[StaleFile | None, bool]] = {}
    stale: dict[int, tuple[StaleFile, ...]] = {}
    pythons: list[int] = []
    foreign: list[int] = []
    scanned = 0
    try:
        own_mnt: str | None = os.readlink(f"{proc}/self/ns/mnt")
    except OSError:
        own_mnt = None
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{proc}/{name}/maps", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # exited, or not ours to read
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 17):
                chunks.append(chunk)
        except OSError:
            continue
        finally:
            os.close(fd)
        scanned += 1
        data = b"".join(chunks)
        if not data:
            continue  # a kernel thread or a zombie
        keys = set(_EXEC_MAPPING.findall(data))
        if not keys:
            continue
        pid = int(name)
        view = _view(proc, pid, own_mnt)
        if view is None:
            foreign.append(pid)  # its paths name files we cannot see: nothing to judge
            continue
        found: list[StaleFile] = []
        is_python = False
        for key in keys:
            verdict = verdicts.get((view[0], key))
            if verdict is None:
                verdict = _judge_key(key, view[1])
                verdicts[(view[0], key)] = verdict
            if verdict[0] is not None:
                found.append(verdict[0])
            is_python = is_python or verdict[1]
        if found:
            stale[pid] = tuple(sorted(set(found), key=lambda item: item.path))
        if is_python:
            pythons.append(pid)
    return ProcessScan(scanned, stale, tuple(sorted(pythons)), tuple(sorted(foreign)))


def _judge_key(
    key: tuple[bytes, bytes, bytes, bytes], prefix: bytes = b""
) -> tuple[StaleFile | None, bool]:
    """(verdict, is a Python interpreter) for one distinct mapping, its path seen under prefix."""
    mapping = _mapped_file(key)
    path = os.fsencode(mapping.path)
    on_disk = None if path.startswith(_IGNORED_PREFIXES) else _inode(prefix + path)
    return judge(mapping, on_disk), bool(_PYTHON_EXE.search(path))
