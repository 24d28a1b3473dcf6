"""A host's ledger of deferred restarts, read through the transport: command builder and parser.

The files are the charms' format, the same on hosts with or without interlock installed, so one
listing serves both: each `*.deferred` file's path, then its text.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.errors import FileFormatError
from interlock.host.ledger import DeferredEvent, parse_event
from interlock.host.trusted_file import EVENT_MAX_BYTES

MARK = "--- interlock ledger file "

LISTING_SCRIPT = r"""
cd "$1" 2>/dev/null || exit 0
for f in *.deferred; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  printf '%s%s/%s\n' "$2" "$1" "$f"
  head -c __EVENT_READ__ -- "$f"
  printf '\n'
done
""".replace("__EVENT_READ__", str(EVENT_MAX_BYTES + 1))  # one byte more: the parser reports it


@dataclass(frozen=True)
class LedgerListing:
    events: tuple[DeferredEvent, ...]
    problems: tuple[str, ...]

    @property
    def services(self) -> list[str]:
        """The services owed a restart, in a stable order."""
        return sorted({event.unit for event in self.events})

    def paths_of(self, service: str) -> list[str]:
        return [event.path for event in self.events if event.unit == service and event.path]


def listing_command(directory: str) -> list[str]:
    return ["sh", "-c", LISTING_SCRIPT, "sh", directory, MARK]


def parse_listing(text: str) -> LedgerListing:
    events: list[DeferredEvent] = []
    problems: list[str] = []
    path: str | None = None
    body: list[str] = []

    def flush() -> None:
        if path is None:
            return
        try:
            events.append(parse_event("\n".join(body), path))
        except FileFormatError as exc:
            problems.append(str(exc))

    for line in text.split("\n"):
        if line.startswith(MARK):
            flush()
            path = line[len(MARK) :]
            body = []
        elif path is not None:
            body.append(line)
    flush()
    return LedgerListing(tuple(events), tuple(problems))
