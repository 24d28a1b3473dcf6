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
from interlock.host.script_output import BUFFERED
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
# What Linux reports to user space as the tick rate on every architecture but alpha and ia64
# (where the host asks getconf); used when the output names none.
USER_HZ = 100
# At most this much of an init script is read (Debian's longest are about 10 KiB).
SCRIPT_READ = 65536

# A bash function (bash is Essential on Debian and Ubuntu), so the ledger fact can run it after
# its own reads in the same session. "$m" is the marker; the services are its arguments (checked
# names: no option-like words). Every process started here costs each host of a fleet status the
# same, so it uses builtins wherever they do: on sysv no process at all, but one readlink when a
# DAEMON path goes through a symlink.
FUNCTION = r"""
service_states() {
  local -x LC_ALL=C
  local s key value rest text p pid stat comm arg args d map skip seen=" "
  local -a units=() daemons=() named=()
  if [[ -d /run/systemd/system ]]; then
    for s do
      case "$s" in *.*) units+=("$s") ;; *) units+=("$s.service") ;; esac
    done
    put "$m systemd"
    flush
    systemctl show --timestamp=unix __PROPS__ -- "${units[@]}" 2>/dev/null ||
      systemctl show __PROPS__ -- "${units[@]}"
    return 0
  fi
  put "$m sysv"
  while read -r key value rest; do
    if [[ $key = btime ]]; then put "$m btime" "$value"; break; fi
  done < /proc/stat
  # The unit of a process's start time in /proc/PID/stat: USER_HZ, 100 on every architecture
  # Linux runs on but alpha and ia64.
  put "$m ticks"
  case "$HOSTTYPE" in alpha*|ia64*) flush; getconf CLK_TCK || : ;; *) put 100 ;; esac
  # Each script whole to the parser (up to a NUL byte, at most __SCRIPT_READ__ bytes); here only
  # the literal paths it names: DAEMON= and --exec, resolved here where they mean something,
  # and those with "pid" in them (pidfiles outside /run).
  local daemon_re=$'\n[[:blank:]]*(export[[:blank:]]+)?DAEMON=["\']?(/[^"\' ;#\n]*)(.*)'
  local exec_re=$'--exec[[:blank:]]+(/[^"\' ;#\n]*)(.*)'
  local pid_re='(^|[^A-Za-z0-9_./-])(/[A-Za-z0-9_./-]*[Pp][Ii][Dd][A-Za-z0-9_./-]*)(.*)'
  for s do
    p=/etc/init.d/${s%.service}
    [[ -f $p ]] || continue
    text=""; IFS= read -r -d '' -n __SCRIPT_READ__ text < "$p"
    put "$m initscript $p" "$text"
    rest=$'\n'$text
    while [[ $rest =~ $daemon_re ]]; do
      daemons+=("${BASH_REMATCH[2]}"); rest=${BASH_REMATCH[3]}
    done
    rest=$text
    while [[ $rest =~ $exec_re ]]; do
      daemons+=("${BASH_REMATCH[1]}"); rest=${BASH_REMATCH[2]}
    done
    rest=$text
    while [[ $rest =~ $pid_re ]]; do
      named+=("${BASH_REMATCH[2]}"); rest=${BASH_REMATCH[3]}
    done
  done
  if (( ${#daemons[@]} )); then
    put "$m real ${daemons[*]}"
    if canonical_paths "${daemons[@]}"; then
      put "${daemons[@]}"
    else
      flush
      readlink -f -- "${daemons[@]}" || :
    fi
  fi
  for p in /run/*.pid /run/*/*.pid "${named[@]}"; do
    # Each pidfile once, however many times the scripts name it.
    case "$seen" in *" $p "*) continue ;; esac
    seen+="$p "
    [[ -f $p ]] || continue
    pid=""; read -r pid rest 2>/dev/null < "$p" || :
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    [[ -r /proc/$pid/stat ]] || continue
    stat=""; comm=""
    read -r stat 2>/dev/null < "/proc/$pid/stat" || :
    read -r comm 2>/dev/null < "/proc/$pid/comm" || :
    [[ -n $stat ]] || continue
    put "$m pidfile $p $pid" "$m stat $pid" "$stat" "$m comm $pid" "$comm"
    # An interpreter's process is known by the script on its command line.
    case "$comm" in
      python*|perl*|ruby*|node*|sh|bash|dash|java)
        args=""
        while IFS= read -r -d '' arg || [[ -n $arg ]]; do args+="$arg "; done \
          2>/dev/null < "/proc/$pid/cmdline"
        put "$m cmdline $pid" "$args" ;;
    esac
    # Its executable, where that can say it is a DAEMON: the DAEMON path it is the same file as
    # (builtin test, no readlink), or a deleted executable's path from its first mapping (an
    # upgraded binary that still runs no longer is the same file as its DAEMON path).
    for d in "${daemons[@]}"; do
      if [[ /proc/$pid/exe -ef $d ]]; then
        put "$m exe $pid" "$d"; continue 2
      fi
    done
    map=""; read -r skip skip skip skip skip map 2>/dev/null < "/proc/$pid/maps" || :
    case "$map" in
      /*" (deleted)") put "$m exe $pid" "$map" ;;
    esac
  done
  return 0
}

# Whether every argument is an absolute path with no symlink, ".", ".." or "//" in it, which
# `readlink -f` would print unchanged.
canonical_paths() {
  local path part prefix IFS=/
  for path do
    case "$path/" in /*//*|/*/./*|/*/../*) return 1 ;; /*) ;; *) return 1 ;; esac
    prefix=""
    set -f
    for part in ${path#/}; do
      prefix="$prefix/$part"
      [[ -L $prefix ]] && { set +f; return 1; }
    done
    set +f
  done
  return 0
}
""".replace("__PROPS__", " ".join(f"-p {prop}" for prop in PROPERTIES)).replace(
    "__SCRIPT_READ__", str(SCRIPT_READ)
)

SCRIPT = (
    BUFFERED
    + FUNCTION
    + """
m=$1; shift
service_states "$@"
# A process that exits mid-read only loses its state; the read itself has succeeded.
exit 0
"""
)


def command(services: Sequence[str], marker: str | None = None) -> list[str]:
    return ["bash", "-c", SCRIPT, "service-state", marker or new_marker(), *services]


def parse(text: str, marker: str, services: Sequence[str]) -> dict[str, ServiceState]:
    """Each of `services`' state (not running when nothing runs it); ValueError on output that
    is not this command's."""
    sections = split_sections(text, marker)
    if not sections or sections[0][0][0] not in (SYSTEMD, SYSV):
        raise ValueError(f"unexpected service state output: {text[:120]!r}")
    return states_from_sections(sections, services)[0]


def states_from_sections(
    sections: Sequence[tuple[list[str], str]],
    services: Sequence[str],
    boot_times: Sequence[float | None] = (None,),
) -> list[dict[str, ServiceState]]:
    """The states `FUNCTION` printed, once for each of `boot_times` (None: the host's
    whole-second `btime`), from one reading of the sections."""
    found = _Found()
    for header, body in sections:
        found.add(header, body)
    return [_states(found, services, boot_time) for boot_time in boot_times]


def _states(
    found: _Found, services: Sequence[str], boot_time: float | None
) -> dict[str, ServiceState]:
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
        elif kind == "initscript" and len(header) == 2 and header[1].startswith(INIT_DIR + "/"):
            self.scripts[header[1][len(INIT_DIR) + 1 :]] = parse_init_script(body)
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
