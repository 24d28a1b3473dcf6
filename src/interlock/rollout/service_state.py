"""Service state on a remote host, for "was it really restarted?": command builders and parsers.

Two questions, each one command through the transport. *Which manager, which pidfiles*: on a
systemd host nothing more is needed; on a sysv host the init scripts are read and parsed here, as
`service` would find the pidfile (PIDFILE=/run/$NAME.pid, --pidfile), once per host. *What runs
now*: `systemctl show` (InvocationID, MainPID, start time) on systemd; on sysv each service's pid
from its pidfile, the process's `/proc/<pid>/stat` (start in clock ticks since boot) and btime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from interlock.host.services.base import ServiceState
from interlock.host.services.systemd import (
    parse_show,
    show_command,
    state_from_properties,
    unit_name,
)
from interlock.host.services.sysv import parse_init_script, parse_start_ticks

SYSTEMD = "systemd"
SYSV = "sysv"

INFO_SCRIPT = r"""
if [ -d /run/systemd/system ]; then echo 'manager systemd'; exit 0; fi
echo 'manager sysv'
for s in "$@"; do
  f="/etc/init.d/$s"
  if [ -r "$f" ]; then
    printf 'script %s\n' "$s"
    while IFS= read -r l || [ -n "$l" ]; do printf 'line %s %s\n' "$s" "$l"; done < "$f"
  else
    printf 'noscript %s\n' "$s"
  fi
done
"""

SYSV_STATE_SCRIPT = r"""
printf 'btime %s\n' "$(sed -n 's/^btime //p' /proc/stat)"
printf 'clk_tck %s\n' "$(getconf CLK_TCK 2>/dev/null || echo 100)"
while [ $# -gt 2 ]; do
  svc=$1; daemon=$2; n=$3; shift 3; found=; i=0
  [ -n "$daemon" ] && printf 'real %s %s\n' "$(readlink -f "$daemon" 2>/dev/null)" "$svc"
  while [ "$i" -lt "$n" ]; do
    f=$1; shift; i=$((i + 1))
    [ -z "$found" ] && [ -r "$f" ] || continue
    pid=; read -r pid _ < "$f" || true
    case $pid in ''|*[!0-9]*) continue ;; esac
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    printf 'pid %s %s\n' "$pid" "$svc"
    printf 'exe %s %s\n' "$pid" "$(readlink "/proc/$pid/exe" 2>/dev/null)"
    printf 'cmd %s %s\n' "$pid" "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"
    printf 'stat %s\n' "$stat"
    found=1
  done
  [ -n "$found" ] || printf 'down %s\n' "$svc"
done
"""


@dataclass(frozen=True)
class ServiceSetup:
    """How to find a service's process on one host: its manager, pidfiles and daemon binary."""

    service: str
    manager: str
    pidfiles: tuple[str, ...] = ()
    daemon: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "manager": self.manager,
            "pidfiles": list(self.pidfiles),
            "daemon": self.daemon,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ServiceSetup:
        pidfiles = data.get("pidfiles") or []
        assert isinstance(pidfiles, list)
        daemon = data.get("daemon")
        return cls(
            str(data["service"]),
            str(data["manager"]),
            tuple(str(p) for p in pidfiles),
            None if daemon is None else str(daemon),
        )


def info_command(services: Sequence[str]) -> list[str]:
    return ["sh", "-c", INFO_SCRIPT, "sh", *services]


def parse_info(text: str, services: Sequence[str]) -> dict[str, ServiceSetup]:
    """The manager, and for sysv each service's pidfile candidates and daemon binary."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("manager "):
        raise ValueError(f"unexpected service info output: {text[:120]!r}")
    manager = lines[0].split()[1]
    if manager == SYSTEMD:
        return {service: ServiceSetup(service, SYSTEMD) for service in services}
    scripts: dict[str, list[str]] = {service: [] for service in services}
    for line in lines[1:]:
        kind, _, rest = line.partition(" ")
        if kind == "line":
            service, _, text = rest.partition(" ")
            scripts.setdefault(service, []).append(text)
    result: dict[str, ServiceSetup] = {}
    for service in services:
        info = parse_init_script("\n".join(scripts.get(service, [])))
        candidates = [
            info.pidfile,
            f"/run/{service}.pid",
            f"/var/run/{service}.pid",
            f"/run/{service}/{service}.pid",
        ]
        unique = tuple(dict.fromkeys(path for path in candidates if path))
        result[service] = ServiceSetup(service, SYSV, unique, info.daemon)
    return result


def state_command(setups: Sequence[ServiceSetup]) -> list[str]:
    if setups and setups[0].manager == SYSTEMD:
        return show_command([unit_name(setup.service) for setup in setups])
    args: list[str] = []
    for setup in setups:
        args += [setup.service, setup.daemon or "", str(len(setup.pidfiles)), *setup.pidfiles]
    return ["sh", "-c", SYSV_STATE_SCRIPT, "sh", *args]


def parse_states(text: str, setups: Sequence[ServiceSetup]) -> dict[str, ServiceState]:
    if setups and setups[0].manager == SYSTEMD:
        blocks = parse_show(text)
        if len(blocks) != len(setups):
            raise ValueError(f"systemctl show described {len(blocks)} units, asked {len(setups)}")
        return {
            setup.service: state_from_properties(setup.service, block, None)
            for setup, block in zip(setups, blocks, strict=True)
        }
    return parse_sysv_states(text, setups)


def parse_sysv_states(text: str, setups: Sequence[ServiceSetup]) -> dict[str, ServiceState]:
    btime: int | None = None
    ticks_per_second = 100
    pids: dict[str, int] = {}
    exes: dict[int, str] = {}
    commands: dict[int, list[str]] = {}
    stats: dict[int, str] = {}
    real_daemons: dict[str, str] = {}
    current_pid: int | None = None
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "btime" and rest.strip().isdigit():
            btime = int(rest)
        elif kind == "clk_tck" and rest.strip().isdigit():
            ticks_per_second = int(rest) or 100
        elif kind == "real":
            path, _, service = rest.rpartition(" ")
            real_daemons[service] = path
        elif kind == "pid":
            pid_text, _, service = rest.partition(" ")
            current_pid = int(pid_text)
            pids[service] = current_pid
        elif kind == "exe":
            pid_text, _, exe = rest.partition(" ")
            exes[int(pid_text)] = exe.removesuffix(" (deleted)")
        elif kind == "cmd":
            pid_text, _, command = rest.partition(" ")
            commands[int(pid_text)] = command.split()
        elif kind == "stat" and current_pid is not None:
            stats[current_pid] = rest
    if btime is None:
        raise ValueError("no boot time in the service state output")
    states: dict[str, ServiceState] = {}
    for setup in setups:
        pid = pids.get(setup.service)
        if pid is None or pid not in stats:
            states[setup.service] = ServiceState(setup.service, active=False)
            continue
        if setup.daemon and not runs_daemon(
            setup.daemon, real_daemons.get(setup.service), exes.get(pid), commands.get(pid, [])
        ):
            # A stale pidfile whose pid now belongs to another program.
            states[setup.service] = ServiceState(setup.service, active=False)
            continue
        started = btime + parse_start_ticks(stats[pid]) / ticks_per_second
        states[setup.service] = ServiceState(setup.service, True, pid, started)
    return states


def runs_daemon(daemon: str, real: str | None, exe: str | None, command: Sequence[str]) -> bool:
    """Whether a process is the init script's DAEMON: its executable, or, for a script run by
    an interpreter (`#!/usr/bin/python3`), the script named on its command line."""
    names = {daemon, real} - {None, ""}
    if exe in names:
        return True
    return any(arg in names for arg in command[:3])


def state_to_dict(state: ServiceState) -> dict[str, object]:
    return {
        "name": state.name,
        "active": state.active,
        "pid": state.pid,
        "started_at": state.started_at,
        "invocation": state.invocation,
    }


def state_from_dict(data: Mapping[str, object]) -> ServiceState:
    pid = data.get("pid")
    started = data.get("started_at")
    invocation = data.get("invocation")
    return ServiceState(
        str(data["name"]),
        bool(data["active"]),
        int(pid) if isinstance(pid, int) else None,
        float(started) if isinstance(started, int | float) else None,
        str(invocation) if invocation else None,
    )
