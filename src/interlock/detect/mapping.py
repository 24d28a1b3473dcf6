"""Which service a process belongs to: its systemd unit (cgroup) or its sysv init script.

systemd puts every service's processes in the unit's cgroup, so `/proc/<pid>/cgroup` names the
unit directly. Under sysv init the link is the init script's pidfile: the process it names is the
service's main process, and that process's descendants (workers) belong to the service too. A
daemon without a pidfile is recognised by the executable its init script starts (`DAEMON=`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.host.services.sysv import InitScriptInfo, parse_init_script

# Scripts that are part of the boot sequence, not services.
_NOT_SERVICES = frozenset(
    (
        "README",
        "skeleton",
        "rc",
        "rcS",
        "halt",
        "reboot",
        "single",
        "killprocs",
        "sendsigs",
        "umountfs",
        "umountnfs.sh",
        "umountroot",
    )
)
_MAX_ANCESTRY = 64


@dataclass(frozen=True)
class ProcStat:
    """The fields of `/proc/<pid>/stat` detection needs."""

    comm: str
    ppid: int
    start_ticks: int


def parse_stat(text: str) -> ProcStat:
    """`/proc/<pid>/stat`: the command name (field 2) may contain spaces and parentheses."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    fields = text[close_paren + 2 :].split()
    return ProcStat(text[open_paren + 1 : close_paren], int(fields[1]), int(fields[19]))


def unit_from_cgroup_path(path: str) -> str | None:
    """`/system.slice/nova-compute.service[/sub]` → `nova-compute.service`; user sessions → None."""
    parts = [part for part in path.split("/") if part]
    if not parts or parts[0] == "user.slice":
        return None
    for part in reversed(parts):
        if part.endswith(".service") and is_valid_service_name(part):
            return part
    return None


def parse_cgroup(text: str) -> str | None:
    """The systemd unit in `/proc/<pid>/cgroup` (the v2 line `0::…` or v1 `name=systemd`)."""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy == "0" and controllers == "") or controllers == "name=systemd":
            unit = unit_from_cgroup_path(path)
            if unit is not None:
                return unit
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _read_pid(pidfile: str) -> int | None:
    text = _read(pidfile)
    if text is None:
        return None
    try:
        pid = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def _cmdline(proc: str, pid: int) -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]


def _exe(proc: str, pid: int) -> str | None:
    try:
        return os.readlink(f"{proc}/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return None


def runs_daemon(proc: str, pid: int, daemon: str) -> bool:
    """The process runs `daemon`: as its executable, or as the script an interpreter runs."""
    targets = {daemon, os.path.realpath(daemon)}
    if _exe(proc, pid) in targets:
        return True
    return any(arg in targets for arg in _cmdline(proc, pid)[:4])


class ServiceMapper:
    """Maps pids to service names (without `.service`); builds its sysv index on first use."""

    def __init__(self, proc: str, init_dir: str, systemd: bool) -> None:
        self.proc = proc
        self.init_dir = init_dir
        self.systemd = systemd
        self._main_pids: dict[int, str] | None = None
        self._daemons: dict[str, str] = {}

    def stat(self, pid: int) -> ProcStat | None:
        text = _read(f"{self.proc}/{pid}/stat")
        if text is None:
            return None
        try:
            return parse_stat(text)
        except (ValueError, IndexError):
            return None

    def _scripts(self) -> dict[str, InitScriptInfo]:
        try:
            names = sorted(os.listdir(self.init_dir))
        except OSError:
            return {}
        scripts = {}
        for name in names:
            if name in _NOT_SERVICES or name.startswith(".") or not is_valid_service_name(name):
                continue
            path = os.path.join(self.init_dir, name)
            if not os.access(path, os.X_OK) or not os.path.isfile(path):
                continue
            text = _read(path)
            scripts[name] = parse_init_script(text or "")
        return scripts

    def _index(self) -> dict[int, str]:
        if self._main_pids is not None:
            return self._main_pids
        main_pids: dict[int, str] = {}
        for name, info in self._scripts().items():
            if info.daemon:
                self._daemons.setdefault(info.daemon, name)
            for pidfile in (info.pidfile, f"/run/{name}.pid", f"/run/{name}/{name}.pid"):
                if not pidfile:
                    continue
                pid = _read_pid(pidfile)
                if pid is None or not os.path.exists(f"{self.proc}/{pid}"):
                    continue
                if info.daemon and not runs_daemon(self.proc, pid, info.daemon):
                    continue  # a stale pidfile whose pid now belongs to another program
                main_pids.setdefault(pid, name)
                break
        self._main_pids = main_pids
        return main_pids

    def service_of(self, pid: int) -> str | None:
        if self.systemd:
            text = _read(f"{self.proc}/{pid}/cgroup")
            unit = parse_cgroup(text) if text else None
            if unit is not None:
                return canonical_service(unit)
        main_pids = self._index()
        current = pid
        for _ in range(_MAX_ANCESTRY):
            if current in main_pids:
                return main_pids[current]
            stat = self.stat(current)
            if stat is None or stat.ppid <= 1:
                break
            current = stat.ppid
        exe = _exe(self.proc, pid)
        if exe is not None and exe in self._daemons:
            return self._daemons[exe]
        return None
