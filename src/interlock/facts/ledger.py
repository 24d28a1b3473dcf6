"""A host's ledger: its deferred restarts, interlock's deferred hooks, and the state of every
service the ledger names, in one session.

Hosts need nothing but bash (Essential on Debian and Ubuntu), so a host that only a charm
manages is read exactly like one that interlock manages: the event files are parsed here by the
host side's own parser (its limits and refusals apply), and each file's bytes are kept as a
digest so a later removal can check that the file still holds what was read. An event whose
service has started since is "restarted since": `interlock check` on the host would clear it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.errors import FileFormatError, InterlockError
from interlock.facts import service_state
from interlock.facts.sections import new_marker, split_sections
from interlock.host.hooks import STATE_DIR, validate_hook_name
from interlock.host.ledger import LEDGER_DIR, DeferredEvent, check_event_size, parse_event
from interlock.host.reboot import NEED_FUNCTION, RebootNeed, parse_need
from interlock.host.script_output import BUFFERED
from interlock.host.services.base import ServiceState
from interlock.host.services.sysv import boot_time_from, parse_uptime
from interlock.host.trusted_file import EVENT_MAX_BYTES

HOOK_DIR = f"{STATE_DIR}/hooks"

# bash (Essential on Debian and Ubuntu). "$1" is the marker, "$2" the ledger dir, "$3"
# interlock's hook dir; the reboot need (host/reboot.py) is printed under its own marker. Service
# names come from the ledger files and are checked against a strict pattern before any use. Every
# process it starts costs each host of a fleet the same, so files are read, and the ledger's
# service names found, with builtins: a host with an empty ledger and no kernel package changed
# since boot costs no process at all.
SCRIPT = (
    BUFFERED
    + service_state.FUNCTION
    + NEED_FUNCTION
    + r"""
# The lines of "$1" (empty ones left out) into the array `lines`, in memory: a `read` loop on a
# pipe or here-string costs a system call per byte.
split_lines() {
  local IFS=$'\n'
  set -f
  lines=($1)
  set +f
}

export LC_ALL=C
m=$1; ledger=$2; hooks=$3
name=""; read -r name < /proc/sys/kernel/hostname
uptime=""; read -r uptime < /proc/uptime
put "$m host" "$name" "$m clock" "$EPOCHREALTIME" "$uptime" "$m reboot"
reboot_need "$m-reboot" /
service_re='^(.*[{,])? *service: *['\''"]?([A-Za-z0-9@._:+-]*)'
services=()
for f in "$ledger"/*.deferred; do
  [[ -f $f && ! -L $f ]] || continue
  # Up to the first NUL byte (bash holds none); a read that stops short of the cap on one says
  # so, with the file's size (one process, for a file no writer of events makes).
  body=""
  if IFS= read -r -d '' -n __EVENT_READ__ body < "$f" && (( ${#body} < __EVENT_READ__ )); then
    size=$(wc -c < "$f") || size=0
    put "$m nul $((size + 0)) $f"
  fi
  put "$m event $f" "$body"
  split_lines "$body"
  for line in "${lines[@]}"; do
    [[ $line =~ $service_re ]] || continue
    s=${BASH_REMATCH[2]%.service}
    case "$s" in ''|-*|*..*) continue ;; esac
    case " ${services[*]} " in *" $s "*) ;; *) services+=("$s") ;; esac
  done
done
for f in "$hooks"/*.hook; do
  [[ -f $f ]] || continue
  body=""; IFS= read -r -d '' -n __EVENT_READ__ body < "$f"
  put "$m hook $f" "$body"
done
(( ${#services[@]} )) || exit 0
service_states "${services[@]}"
# A process that exits mid-read only loses its start time; the read itself has succeeded.
exit 0
""".replace("__EVENT_READ__", str(EVENT_MAX_BYTES + 1))  # one byte more: the parser reports it
)

# An event's state: its service has not restarted since, or it has (`interlock check` clears it).
PENDING = "pending"
RESTARTED_SINCE = "restarted since"


@dataclass(frozen=True)
class LedgerFact:
    """One host's ledger as read; unreadable files are problems, not failures."""

    hostname: str
    events: tuple[DeferredEvent, ...] = ()
    hooks: tuple[str, ...] = ()
    states: Mapping[str, ServiceState] = field(default_factory=dict, hash=False)
    problems: tuple[str, ...] = ()
    # sha256 of each event file's bytes as read, by path: what a removal checks it still holds.
    digests: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Each ledger service's instance (not running included) with start times from the host's
    # whole-second btime: stable across reads, so a later service state read compares with it.
    instances: Mapping[str, ServiceState] = field(default_factory=dict, hash=False)
    reboot: RebootNeed | None = None

    def restarted_since(self, event: DeferredEvent) -> bool:
        state = self.states.get(event.unit)
        return state is not None and state.started_after(event.timestamp)

    def state(self, event: DeferredEvent) -> str:
        return RESTARTED_SINCE if self.restarted_since(event) else PENDING

    @property
    def pending(self) -> list[DeferredEvent]:
        return [event for event in self.events if not self.restarted_since(event)]

    @property
    def services(self) -> list[str]:
        """The services owed a restart (restarted since or not), in a stable order."""
        return sorted({event.unit for event in self.events})

    @property
    def pending_services(self) -> list[str]:
        return sorted({event.unit for event in self.pending})

    def paths_of(self, service: str) -> list[str]:
        return [event.path for event in self.events if event.unit == service and event.path]


def command(
    marker: str | None = None, ledger_dir: str = LEDGER_DIR, hook_dir: str = HOOK_DIR
) -> list[str]:
    return ["bash", "-c", SCRIPT, "ledger", marker or new_marker(), ledger_dir, hook_dir]


def parse(text: str, marker: str, host: str) -> LedgerFact:
    """The command's output (decoded with `surrogateescape`); `host` names the host in problems,
    since one report covers many hosts."""
    hostname = host
    boot_time: float | None = None
    events: list[DeferredEvent] = []
    hooks: list[str] = []
    problems: list[str] = []
    digests: dict[str, str] = {}
    states_from: list[tuple[list[str], str]] = []
    reboot: RebootNeed | None = None
    with_nul: dict[str, int] = {}  # path -> size, for files with a NUL byte
    for header, body in split_sections(text, marker):
        kind = header[0]
        try:
            if kind == "host":
                hostname = body.strip() or host
            elif kind == "clock":
                now, uptime = body.split("\n")[:2]
                boot_time = boot_time_from(float(now), parse_uptime(uptime))
            elif kind == "nul":
                with_nul[" ".join(header[2:])] = int(header[1])
            elif kind == "event":
                path = " ".join(header[1:])
                raw = body.encode("utf-8", "surrogateescape")
                text = raw.decode("utf-8", "replace")
                if path in with_nul:
                    # The body stops at the file's first NUL byte: refused as the host would
                    # (too large, or a character YAML does not allow), never removable by this
                    # digest.
                    check_event_size(with_nul[path], f"{host}:{path}")
                    text += "\0"
                else:
                    digests[path] = hashlib.sha256(raw).hexdigest()
                try:
                    events.append(parse_event(text, path))
                except FileFormatError as exc:
                    raise FileFormatError(f"{host}:{exc.path}", exc.message, exc.line) from None
            elif kind == "reboot":
                reboot = parse_need(body, f"{marker}-reboot")
            elif kind == "hook":
                hooks.append(validate_hook_name(str(json.loads(body)["name"])))
            else:
                states_from.append((header, body))
        except FileFormatError as exc:
            problems.append(str(exc))
        except (ValueError, KeyError, IndexError, TypeError, InterlockError) as exc:
            problems.append(f"{host}: unreadable section {' '.join(header)[:200]}: {exc}")
    units = sorted({event.unit for event in events})
    # Start times against the boot time from clock and uptime, to the hundredth of a second, as
    # `interlock check` on the host judges "restarted since".
    precise, instances = service_state.states_from_sections(states_from, units, (boot_time, None))
    return LedgerFact(
        hostname,
        tuple(events),
        tuple(sorted(set(hooks))),
        {unit: state for unit, state in precise.items() if state.active},
        tuple(problems),
        digests,
        instances,
        reboot,
    )
