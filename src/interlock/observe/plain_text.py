"""Text from hosts and files shown to a person as inert data.

A ledger reason, a service name or a remote error message is written by whoever controls that
host or file. Shown raw, an escape sequence in it can retitle the terminal, move the cursor or
hide lines, and a bidirectional override can make a line read differently than it is. Every
such value goes through `printable` on its way to a terminal or a log for people.
"""

from __future__ import annotations

import re

# C0 controls but tab (newline too: one value stays one line), DEL, C1 controls, and the
# Unicode line separators and bidirectional marks, embeddings, overrides and isolates.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, limit: int | None = None) -> str:
    """`value` as one line with every control character shown as an escape (`\\x1b`), cut to
    `limit` characters (and said so) when one is given."""
    text = _UNPRINTABLE.sub(_escape, "" if value is None else str(value))
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def printable_lines(text: str) -> str:
    """Several lines, each made printable: the line breaks are kept, nothing else."""
    return "\n".join(printable(line) for line in text.split("\n"))
