"""Fleet status: every host's deferred restarts and hooks in one view, in one round trip each.

Hosts need nothing but `sh`: one probe script prints the ledger files, interlock's deferred hooks
and the start-time facts of the services named in the ledger, between marker lines. Everything
else happens here, with the same parsers the host side uses, so a host that only a charm manages
is read exactly like one interlock manages. An event whose service has started since is shown as
such ("restarted since"): `interlock check` on the host would clear it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from interlock.errors import FileFormatError
from interlock.fleet.inventory import Host
from interlock.fleet.transport import HostOutcome, Transport, fan_out
from interlock.host.ledger import DeferredEvent, parse_event
from interlock.host.policy import canonical_service
from interlock.host.reboot import NEED_SCRIPT, RebootNeed, parse_need
from interlock.host.services.base import ServiceState
from interlock.host.services.systemd import PROPERTIES, parse_show, state_from_properties
from interlock.host.services.sysv import (
    InitScriptInfo,
    boot_time_from,
    parse_init_script,
    parse_start_ticks,
    parse_uptime,
    pidfile_candidates,
    runs_daemon,
)
from interlock.host.trusted_file import EVENT_MAX_BYTES

# The probe: "$1" is the marker, "$2" the ledger dir, "$3" interlock's hook dir, "$4" the reboot
# probe (host/reboot.py: reboot-required, newer kernels), run under its own marker. Service names
# come from the ledger files and are checked against a strict pattern before any use. Every
# process it starts costs each host the same, so one-line files are read with the `read` builtin
# and the ledger's service names with one sed for all files.
PROBE = r"""
m=$1; ledger=$2; hooks=$3
echo "$m host"; read -r line < /proc/sys/kernel/hostname || :; printf '%s\n' "$line"
echo "$m clock"; date +%s.%N; read -r line < /proc/uptime || :; printf '%s\n' "$line"
echo "$m ticks"; getconf CLK_TCK
if [ -d /run/systemd/system ]; then init=systemd; else init=sysv; fi
echo "$m init"; echo "$init"
echo "$m reboot"; sh -c "$4" reboot-need "$m-reboot" / || :
set --
for f in "$ledger"/*.deferred; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  echo "$m event $f"; head -c __EVENT_READ__ -- "$f"; echo
  set -- "$@" "$f"
done
for f in "$hooks"/*.hook; do
  [ -f "$f" ] || continue
  echo "$m hook $f"; cat "$f"; echo
done
[ $# -gt 0 ] || exit 0
services=""
for s in $(sed -n "s/^\(.*[{,]\)\{0,1\} *service: *['\"]\{0,1\}\([A-Za-z0-9@._:+-]*\).*/\2/p" "$@" |
           sort -u); do
  case "$s" in -*|*..*) ;; *) services="$services $s" ;; esac
done
[ -n "$services" ] || exit 0
if [ "$init" = systemd ]; then
  units=""
  for s in $services; do
    case "$s" in *.*) units="$units $s" ;; *) units="$units $s.service" ;; esac
  done
  echo "$m systemd"
  systemctl show --timestamp=unix __PROPS__ -- $units 2>/dev/null ||
    systemctl show __PROPS__ -- $units
  exit 0
fi
for s in $services; do
  name=${s%.service}
  [ -f "/etc/init.d/$name" ] || continue
  echo "$m initscript $name"
  grep -E -e '^[[:space:]]*(export[[:space:]]+)?[A-Z_]+=' -e '--pidfile' "/etc/init.d/$name"
done
for p in /run/*.pid /run/*/*.pid; do
  [ -f "$p" ] || continue
  pid=""; read -r pid 2>/dev/null < "$p" || :
  case "$pid" in ''|*[!0-9]*) continue ;; esac
  [ -r "/proc/$pid/stat" ] || continue
  stat=""; comm=""
  read -r stat 2>/dev/null < "/proc/$pid/stat" || :
  read -r comm 2>/dev/null < "/proc/$pid/comm" || :
  [ -n "$stat" ] || continue
  echo "$m pidfile $p $pid"
  echo "$m stat $pid"; printf '%s\n' "$stat"
  echo "$m exe $pid"; readlink "/proc/$pid/exe" || true
  echo "$m comm $pid"; printf '%s\n' "$comm"
done
# A process that exits mid-read only loses its start time; the probe itself has succeeded.
exit 0
""".replace("__PROPS__", " ".join(f"-p {prop}" for prop in PROPERTIES)).replace(
    "__EVENT_READ__",
    str(EVENT_MAX_BYTES + 1),  # one byte more: the parser reports the excess
)

LEDGER_DIR = "/var/lib/policy-rc.d"
HOOK_DIR = "/var/lib/interlock/hooks"
# An event's state: its service has not restarted since, or it has (`interlock check` clears it).
PENDING = "pending"
RESTARTED_SINCE = "restarted since"


@dataclass(frozen=True)
class HostDebt:
    """One host's deferred work as the probe found it."""

    host: Host
    hostname: str
    events: list[DeferredEvent]
    hooks: list[str]
    states: dict[str, ServiceState]
    problems: list[str] = field(default_factory=list)
    reboot: RebootNeed | None = None

    def restarted_since(self, event: DeferredEvent) -> bool:
        state = self.states.get(event.unit)
        return state is not None and state.started_after(event.timestamp)

    def state(self, event: DeferredEvent) -> str:
        return RESTARTED_SINCE if self.restarted_since(event) else PENDING

    @property
    def pending(self) -> list[DeferredEvent]:
        return [event for event in self.events if not self.restarted_since(event)]


@dataclass(frozen=True)
class FleetStatus:
    hosts: list[HostDebt]
    unreachable: list[tuple[Host, str]]
    duration: float

    @property
    def problems(self) -> list[str]:
        """Files that could not be read, on hosts that could: the view misses what they hold."""
        return [problem for debt in self.hosts for problem in debt.problems]

    @property
    def complete(self) -> bool:
        return not self.unreachable and not self.problems

    def per_service(self) -> Counter[str]:
        return Counter(event.unit for debt in self.hosts for event in debt.pending)

    def per_group(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for debt in self.hosts:
            if debt.pending or debt.hooks:
                counts.update(debt.host.groups or ("ungrouped",))
        return counts

    def as_dict(self) -> dict[str, object]:
        now = int(time.time())
        return {
            "duration_s": round(self.duration, 3),
            "hosts": [
                {
                    "host": debt.host.name,
                    "hostname": debt.hostname,
                    "groups": list(debt.host.groups),
                    "restarts": [
                        {
                            **{k: v for k, v in event.as_dict().items() if k != "path"},
                            "file": event.path,
                            "age_s": max(0, now - event.timestamp),
                            "restarted_since": debt.restarted_since(event),
                            "state": debt.state(event),
                        }
                        for event in debt.events
                    ],
                    "hooks": debt.hooks,
                    "reboot": debt.reboot.as_dict() if debt.reboot else None,
                    "problems": debt.problems,
                }
                for debt in self.hosts
            ],
            "unreachable": [
                {"host": host.name, "reason": reason} for host, reason in self.unreachable
            ],
            "totals": {
                "per_service": dict(sorted(self.per_service().items())),
                "per_group": dict(sorted(self.per_group().items())),
                "hosts_with_pending": sum(1 for d in self.hosts if d.pending or d.hooks),
                "hosts_needing_reboot": sum(1 for d in self.hosts if d.reboot and d.reboot.needed),
            },
        }


def probe_argv(marker: str, ledger_dir: str = LEDGER_DIR, hook_dir: str = HOOK_DIR) -> list[str]:
    return ["sh", "-c", PROBE, "probe", marker, ledger_dir, hook_dir, NEED_SCRIPT]


def split_sections(text: str, marker: str) -> list[tuple[list[str], str]]:
    """The probe's output as (header words, body) pairs, in order."""
    sections: list[tuple[list[str], str]] = []
    header: list[str] | None = None
    body: list[str] = []
    prefix = marker + " "
    for line in text.split("\n"):
        if line.startswith(prefix):
            if header is not None:
                sections.append((header, "\n".join(body)))
            header = line[len(prefix) :].split(" ")
            body = []
        elif header is not None:
            body.append(line)
    if header is not None:
        sections.append((header, "\n".join(body)))
    return sections


def parse_probe(host: Host, text: str, marker: str) -> HostDebt:
    """Turn one host's probe output into its debt; malformed files become problems."""
    hostname = host.name
    btime: float | None = None
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    events: list[DeferredEvent] = []
    hooks: list[str] = []
    problems: list[str] = []
    states: dict[str, ServiceState] = {}
    pidfiles: dict[str, int] = {}
    scripts: dict[str, InitScriptInfo] = {}
    stats: dict[int, str] = {}
    exes: dict[int, str] = {}
    comms: dict[int, str] = {}
    systemd_text: str | None = None
    reboot: RebootNeed | None = None
    for header, body in split_sections(text, marker):
        kind = header[0]
        try:
            if kind == "host":
                hostname = body.strip() or host.name
            elif kind == "clock":
                now, uptime = body.split("\n")[:2]
                btime = boot_time_from(float(now), parse_uptime(uptime))
            elif kind == "ticks" and body.strip().isdigit():
                ticks_per_second = int(body.strip())
            elif kind == "event":
                path = " ".join(header[1:])
                try:
                    events.append(parse_event(body, path))
                except FileFormatError as exc:
                    # One report covers many hosts: say on which one the file is.
                    raise FileFormatError(
                        f"{host.name}:{exc.path}", exc.message, exc.line
                    ) from None
            elif kind == "hook":
                hooks.append(str(json.loads(body)["name"]))
            elif kind == "reboot":
                reboot = parse_need(body, f"{marker}-reboot")
            elif kind == "systemd":
                systemd_text = body
            elif kind == "initscript":
                scripts[header[1]] = parse_init_script(body)
            elif kind == "pidfile":
                pidfiles[header[1]] = int(header[2])
            elif kind == "stat":
                stats[int(header[1])] = body
            elif kind == "exe":
                exes[int(header[1])] = body.strip()
            elif kind == "comm":
                comms[int(header[1])] = body.strip()
        except FileFormatError as exc:
            problems.append(str(exc))
        except (ValueError, KeyError, IndexError) as exc:
            problems.append(f"{host.name}: unreadable probe section {' '.join(header)}: {exc}")

    units = sorted({event.unit for event in events})
    if systemd_text is not None:
        for props in parse_show(systemd_text):
            unit = canonical_service(props.get("Id", ""))
            if unit:
                states[unit] = state_from_properties(unit, props, btime)
    elif btime is not None:
        for unit in units:
            info = scripts.get(unit)
            if info is None:
                continue
            for path in pidfile_candidates(unit, info):
                pid = pidfiles.get(path.replace("/var/run/", "/run/", 1))
                if pid is None or pid not in stats:
                    continue
                if info.daemon and not runs_daemon(info.daemon, exes.get(pid), comms.get(pid)):
                    continue
                started = btime + parse_start_ticks(stats[pid]) / ticks_per_second
                states[unit] = ServiceState(unit, True, pid, started)
                break
    return HostDebt(host, hostname, events, sorted(set(hooks)), states, problems, reboot)


async def gather_status(
    hosts: Sequence[Host],
    transport: Transport,
    window: int = 24,
    timeout: float = 30.0,
    progress: Callable[[HostOutcome[HostDebt], int, int], None] | None = None,
) -> FleetStatus:
    """Probe every host through a sliding window; unreachable hosts are listed, not dropped."""
    marker = "@@interlock-" + os.urandom(8).hex()
    started = time.monotonic()

    async def probe(host: Host) -> HostDebt:
        result = await transport.run(host, probe_argv(marker), timeout=timeout)
        result.check()
        return parse_probe(host, result.stdout.decode("utf-8", "replace"), marker)

    outcomes = await fan_out(hosts, probe, window=window, progress=progress)
    debts = [o.value for o in outcomes if o.ok and o.value is not None]
    unreachable = [(o.host, o.reason or "unknown error") for o in outcomes if not o.ok]
    return FleetStatus(debts, unreachable, time.monotonic() - started)


def gather_status_sync(
    hosts: Sequence[Host], transport: Transport, window: int = 24, timeout: float = 30.0
) -> FleetStatus:
    async def main() -> FleetStatus:
        try:
            return await gather_status(hosts, transport, window, timeout)
        finally:
            await transport.close()

    return asyncio.run(main())
