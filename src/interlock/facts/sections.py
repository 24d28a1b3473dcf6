"""Output made of sections: a header line starting with a marker, then the section's body.

Facts print file contents that may hold anything, so each run uses a marker no file can predict
(`new_marker`); a body is returned exactly as printed, bytes included (decode the output with
`surrogateescape` and encode a body the same way to get the file's bytes back).
"""

from __future__ import annotations

import os

MARKER_PREFIX = "@@interlock-"


def new_marker() -> str:
    return MARKER_PREFIX + os.urandom(8).hex()


def split_sections(text: str, marker: str) -> list[tuple[list[str], str]]:
    """(header words, body) pairs in order. Each section ends with one newline that its printer
    adds so the next header starts a line; that newline is not part of the body."""
    prefix = marker + " "
    sections: list[tuple[list[str], str]] = []
    if text.startswith(prefix):
        start = 0
    else:
        first = text.find("\n" + prefix)
        start = -1 if first < 0 else first + 1
    while start >= 0:
        line_end = text.find("\n", start)
        header = text[start + len(prefix) : len(text) if line_end < 0 else line_end]
        if line_end < 0:
            sections.append((header.split(" "), ""))
            break
        following = text.find("\n" + prefix, line_end)
        body_end = len(text) if following < 0 else following + 1
        body = text[line_end + 1 : body_end]
        sections.append((header.split(" "), body[:-1] if body.endswith("\n") else body))
        start = -1 if following < 0 else following + 1
    return sections
