"""Clearing a host's deferred events where interlock is not installed (the rollout's ledger path).

It keeps the ledger's own rule: under the lock that the ledger's writers take (interlock's gate
and commands), a file goes only if it still holds exactly what the ledger fact read, so a deferral
requested again in between survives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from interlock.host.ledger import LOCK_NAME

# Prints the paths it removed.
SCRIPT = r"""
exec 9>>"$1/$2" || exit 1
flock 9 || exit 1
shift 2
while [ $# -ge 2 ]; do
  sum=$(sha256sum < "$1" 2>/dev/null) && [ "${sum%% *}" = "$2" ] && rm -f -- "$1" &&
    printf '%s\n' "$1"
  shift 2
done
"""


def command(directory: str, digests: Mapping[str, str], paths: Sequence[str]) -> list[str]:
    """Remove these event files, each only if its sha256 is still `digests[path]`."""
    pairs = [item for path in paths for item in (path, digests[path])]
    return ["sh", "-c", SCRIPT, "sh", directory, LOCK_NAME, *pairs]


def parse(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]
