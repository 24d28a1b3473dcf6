"""Which process runs each named service on a host, and since when.

One command for both init systems. On systemd, `systemctl show` (InvocationID, MainPID, start
time as `@epoch`). On sysv, what `service` goes by: each init script's assignment lines (parsed
here, with the host side's own init-script parser), its DAEMON resolved to a real path *on the
host*, and every pidfile under /run with its process's stat, executable and name; the boot time
and the clock tick rate are the host's too.

Start times are `btime` (from /proc/stat, whole seconds) plus the process's start in ticks: the
same process reads the same on every call, so "a later start" never comes from rounding. The
ledger fact (`facts.ledger`) refines the boot time from the host's clock and uptime instead, as
`interlock check` does on the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from interlock.facts.sections import new_marker, split_sections
from interlock.host.policy import canonical_service
from interlock.host.services.base import ServiceState
from interlock.host.services.systemd import PROPERTIES, parse_show, state_from_properties
from interlock.host.services.sysv import (
    INIT_DIR,
    InitScriptInfo,
    parse_init_script,
    parse_start_ticks,
    pidfile_candidates,
)

SYSTEMD = "systemd"
SYSV = "sysv"
# What Linux reports to user space as the tick rate on every architecture; used only if the host
# cannot say (no getconf).
USER_HZ = 100

# A shell function, so the ledger fact can run it after its own reads in the same session.
# "$m" is the marker; the services are its arguments (checked names: no option-like words).
FUNCTION = r"""
service_states() {
  if [ -d /run/systemd/system ]; then
    units=""
    for s do
      case "$s" in *.*) units="$units $s" ;; *) units="$units $s.service" ;; esac
    done
    echo "$m systemd"
    systemctl show --timestamp=unix __PROPS__ -- $units 2>/dev/null ||
      systemctl show __PROPS__ -- $units
    return 0
  fi
  echo "$m sysv"
  # Every process started here costs each host of a fleet status the same: builtins where they
  # do, and one grep, one sed and one readlink for all init scripts together.
  while read -r key value _; do
    if [ "$key" = btime ]; then echo "$m btime"; echo "$value"; break; fi
  done < /proc/stat
  echo "$m ticks"; getconf CLK_TCK || :
  scripts=""
  for s do
    [ -f "/etc/init.d/${s%.service}" ] && scripts="$scripts /etc/init.d/${s%.service}"
  done
  [ -n "$scripts" ] || return 0
  echo "$m initscripts"
  grep -H -E -e '^[[:space:]]*(export[[:space:]]+)?[A-Z_]+=' -e '--pidfile' $scripts
  # DAEMON=/absolute/path as written (quoted or not), resolved here where the path means it;
  # literal absolute paths with "pid" in them (PIDFILE=, PID_FILE=, --pidfile), read below too
  # for pidfiles outside /run.
  daemon_re='s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}DAEMON=["'\'']\{0,1\}'
  daemon_re="$daemon_re"'\(\/[^"'\'' ;#]*\).*/D:\2/p'
  pid_re='s/.*[^A-Za-z0-9_./-]\(\/[A-Za-z0-9_./-]*[Pp][Ii][Dd][A-Za-z0-9_./-]*\).*/P:\1/p'
  daemons=""; named=""
  for word in $(sed -n -e "$daemon_re" -e "$pid_re" $scripts); do
    case "$word" in D:*) daemons="$daemons ${word#D:}" ;; P:*) named="$named ${word#P:}" ;; esac
  done
  if [ -n "$daemons" ]; then
    echo "$m real$daemons"; readlink -f -- $daemons || :
  fi
  for p in /run/*.pid /run/*/*.pid $named; do
    [ -f "$p" ] || continue
    pid=""; read -r pid _ 2>/dev/null < "$p" || :
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    [ -r "/proc/$pid/stat" ] || continue
    stat=""; comm=""
    read -r stat 2>/dev/null < "/proc/$pid/stat" || :
    read -r comm 2>/dev/null < "/proc/$pid/comm" || :
    [ -n "$stat" ] || continue
    echo "$m pidfile $p $pid"
    echo "$m stat $pid"; printf '%s\n' "$stat"
    echo "$m exe $pid"; readlink "/proc/$pid/exe" || echo
    echo "$m comm $pid"; printf '%s\n' "$comm"
    # An interpreter's process is known by the script on its command line (one more process,
    # so only for these).
    case "$comm" in
      python*|perl*|ruby*|node*|sh|bash|dash|java)
        echo "$m cmdline $pid"; tr '\0' ' ' < "/proc/$pid/cmdline"; echo ;;
    esac
  done
}
""".replace("__PROPS__", " ".join(f"-p {prop}" for prop in PROPERTIES))

SCRIPT = (
    FUNCTION
    + """
m=$1; shift
service_states "$@"
# A process that exits mid-read only loses its state; the read itself has succeeded.
exit 0
"""
)


def command(services: Sequence[str], marker: str | None = None) -> list[str]:
    return ["sh", "-c", SCRIPT, "service-state", marker or new_marker(), *services]


def parse(text: str, marker: str, services: Sequence[str]) -> dict[str, ServiceState]:
    """Each of `services`' state (not running when nothing runs it); ValueError on output that
    is not this command's."""
    sections = split_sections(text, marker)
    if not sections or sections[0][0][0] not in (SYSTEMD, SYSV):
        raise ValueError(f"unexpected service state output: {text[:120]!r}")
    return states_from_sections(sections, services, boot_time=None)


def states_from_sections(
    sections: Sequence[tuple[list[str], str]],
    services: Sequence[str],
    boot_time: float | None,
) -> dict[str, ServiceState]:
    """The states `FUNCTION` printed; `boot_time` overrides the host's whole-second `btime`."""
    found = _Found()
    for header, body in sections:
        found.add(header, body)
    if found.systemd is not None:
        by_unit = {}
        for props in parse_show(found.systemd):
            unit = canonical_service(props.get("Id", ""))
            if unit:
                by_unit[unit] = state_from_properties(unit, props, boot_time or found.btime)
        return {
            name: by_unit.get(canonical_service(name), ServiceState(name, active=False))
            for name in services
        }
    boot = boot_time if boot_time is not None else found.btime
    states = {}
    for name in services:
        state = found.sysv_state(canonical_service(name), boot) if boot is not None else None
        states[name] = state or ServiceState(name, active=False)
    return states


class _Found:
    """What the sections say, before it is put together into states."""

    def __init__(self) -> None:
        self.systemd: str | None = None
        self.btime: float | None = None
        self.ticks = USER_HZ
        self.scripts: dict[str, InitScriptInfo] = {}
        self.real: dict[str, str] = {}  # a DAEMON path as written → resolved on the host
        self.pidfiles: dict[str, int] = {}
        self.stats: dict[int, str] = {}
        self.exes: dict[int, str] = {}
        self.comms: dict[int, str] = {}
        self.cmdlines: dict[int, list[str]] = {}

    def add(self, header: list[str], body: str) -> None:
        kind = header[0]
        if kind == SYSTEMD:
            self.systemd = body
        elif kind == "btime" and body.strip().isdigit():
            self.btime = float(body.strip())
        elif kind == "ticks" and body.strip().isdigit():
            self.ticks = int(body.strip()) or USER_HZ
        elif kind == "initscripts":
            lines: dict[str, list[str]] = {}
            for line in body.split("\n"):
                path, sep, text = line.partition(":")
                if sep and path.startswith(INIT_DIR + "/"):
                    lines.setdefault(path[len(INIT_DIR) + 1 :], []).append(text)
            for name, text_lines in lines.items():
                self.scripts[name] = parse_init_script("\n".join(text_lines))
        elif kind == "real":
            resolved = body.split("\n")
            # readlink prints nothing for a path it cannot resolve: then nothing is known.
            if len(resolved) == len(header) - 1:
                self.real.update(zip(header[1:], (path.strip() for path in resolved), strict=True))
        elif kind == "pidfile" and len(header) == 3 and header[2].isdigit():
            self.pidfiles[_run_path(header[1])] = int(header[2])
        elif kind == "stat" and len(header) == 2 and header[1].isdigit():
            self.stats[int(header[1])] = body
        elif kind == "exe" and len(header) == 2 and header[1].isdigit():
            self.exes[int(header[1])] = body.strip().removesuffix(" (deleted)")
        elif kind == "comm" and len(header) == 2 and header[1].isdigit():
            self.comms[int(header[1])] = body.strip()
        elif kind == "cmdline" and len(header) == 2 and header[1].isdigit():
            self.cmdlines[int(header[1])] = body.split()

    def sysv_state(self, unit: str, boot: float) -> ServiceState | None:
        info = self.scripts.get(unit)
        if info is None:
            return None
        for path in pidfile_candidates(unit, info):
            pid = self.pidfiles.get(_run_path(path))
            if pid is None or pid not in self.stats:
                continue
            if info.daemon and not runs_daemon(
                info.daemon,
                self.real.get(info.daemon),
                self.exes.get(pid),
                self.comms.get(pid),
                self.cmdlines.get(pid, []),
            ):
                continue  # a stale pidfile whose pid now belongs to another program
            try:
                started = boot + parse_start_ticks(self.stats[pid]) / self.ticks
            except (ValueError, IndexError):
                continue
            return ServiceState(unit, True, pid, started)
        return None


def _run_path(path: str) -> str:
    """/var/run is a link to /run on Debian: one name for each pidfile."""
    return "/run/" + path[len("/var/run/") :] if path.startswith("/var/run/") else path


def runs_daemon(
    daemon: str, real: str | None, exe: str | None, comm: str | None, command: Sequence[str]
) -> bool:
    """Whether a process is the init script's DAEMON: its executable (as written, or resolved on
    the host), or a script run by an interpreter: by its shebang (the kernel names the process
    after the script, cut to 15 characters) or named on the interpreter's command line."""
    names = {daemon, real} - {None, ""}
    if exe and exe in names:
        return True
    if comm is not None and comm == os.path.basename(daemon)[:15]:
        return True
    return any(arg in names for arg in command[:3])


def as_dict(state: ServiceState) -> dict[str, object]:
    """A state as the journal stores it."""
    return {
        "name": state.name,
        "active": state.active,
        "pid": state.pid,
        "started_at": state.started_at,
        "invocation": state.invocation,
    }


def from_dict(data: Mapping[str, object]) -> ServiceState:
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
