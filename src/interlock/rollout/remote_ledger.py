"""A host's ledger of deferred restarts, read and cleared through the transport.

The files are the charms' format, the same on hosts with or without interlock installed, so one
listing serves both: each `*.deferred` file's path, then its text. Removal keeps the ledger's own
rule on hosts where interlock is not there to apply it: under the ledger's lock, a file goes only
if it still holds exactly what was read, so a deferral requested again in between survives.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from interlock.errors import FileFormatError
from interlock.host.ledger import LOCK_NAME, DeferredEvent, parse_event

MARK = "--- interlock ledger file "

LISTING_SCRIPT = r"""
cd "$1" 2>/dev/null || exit 0
for f in *.deferred; do
  [ -f "$f" ] || continue
  printf '%s%s/%s\n' "$2" "$1" "$f"
  cat -- "$f"
  printf '\n'
done
"""

# The same flock the ledger's writers take (interlock's gate and commands), then each file only
# if its digest is still the one read. Prints the paths it removed.
REMOVAL_SCRIPT = r"""
exec 9>>"$1/$2" || exit 1
flock 9 || exit 1
shift 2
while [ $# -ge 2 ]; do
  sum=$(sha256sum < "$1" 2>/dev/null) && [ "${sum%% *}" = "$2" ] && rm -f -- "$1" &&
    printf '%s\n' "$1"
  shift 2
done
"""

_MARK_RE = re.compile("^" + re.escape(MARK), re.MULTILINE)


@dataclass(frozen=True)
class LedgerListing:
    events: tuple[DeferredEvent, ...]
    problems: tuple[str, ...]
    # sha256 of each event file's bytes as read, by path: what removal checks it still holds.
    digests: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def services(self) -> list[str]:
        """The services owed a restart, in a stable order."""
        return sorted({event.unit for event in self.events})

    def paths_of(self, service: str) -> list[str]:
        return [event.path for event in self.events if event.unit == service and event.path]


def listing_command(directory: str) -> list[str]:
    return ["sh", "-c", LISTING_SCRIPT, "sh", directory, MARK]


def parse_listing(text: str) -> LedgerListing:
    """The listing's output, decoded with `surrogateescape` so digests match the files' bytes."""
    events: list[DeferredEvent] = []
    problems: list[str] = []
    digests: dict[str, str] = {}
    for chunk in _MARK_RE.split(text)[1:]:
        path, _, rest = chunk.partition("\n")
        # The listing adds one newline after each file so the next mark starts a line.
        content = rest[:-1] if rest.endswith("\n") else rest
        raw = content.encode("utf-8", "surrogateescape")
        digests[path] = hashlib.sha256(raw).hexdigest()
        try:
            events.append(parse_event(raw.decode("utf-8", "replace"), path))
        except FileFormatError as exc:
            problems.append(str(exc))
    return LedgerListing(tuple(events), tuple(problems), digests)


def removal_command(directory: str, listing: LedgerListing, paths: Sequence[str]) -> list[str]:
    """Remove these event files of `listing`, each only if unchanged since it was listed."""
    pairs = [item for path in paths for item in (path, listing.digests[path])]
    return ["sh", "-c", REMOVAL_SCRIPT, "sh", directory, LOCK_NAME, *pairs]


def parse_removal(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]
