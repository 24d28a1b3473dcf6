"""Debian package versions, compared the way dpkg compares them (`dpkg --compare-versions`).

`[epoch:]upstream[-revision]`: epochs compare as numbers; upstream and revision compare in
alternating runs of non-digits (letters before other characters, `~` before everything, even
the end of the string) and digits (as numbers). An absent revision equals `0`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_ALLOWED = re.compile(r"[A-Za-z0-9.+~:-]*")


@dataclass(frozen=True)
class Version:
    """A parsed version. Compare with `compare`: dpkg calls 1.0 and 1.00 equal, fields do not."""

    epoch: int
    upstream: str
    revision: str

    @classmethod
    def parse(cls, text: str) -> Version:
        """Split a version; raise ValueError for what dpkg refuses as bad syntax."""
        value = text.strip()
        if not value:
            raise ValueError("version string is empty")
        if any(char.isspace() for char in value):
            raise ValueError(f"version {text!r} has embedded spaces")
        epoch = 0
        if ":" in value:
            head, _, value = value.partition(":")
            if not head:
                raise ValueError(f"version {text!r}: epoch in version is empty")
            if not head.isdigit():
                raise ValueError(f"version {text!r}: epoch in version is not number")
            if not value:
                raise ValueError(f"version {text!r}: nothing after colon in version number")
            epoch = int(head)
        upstream, dash, revision = value.rpartition("-")
        if not dash:
            upstream, revision = value, ""
        elif not revision:
            raise ValueError(f"version {text!r}: revision number is empty")
        if not upstream:
            raise ValueError(f"version {text!r}: version number is empty")
        if (
            not _ALLOWED.fullmatch(upstream)
            or not _ALLOWED.fullmatch(revision)
            or (":" in revision or "-" in revision)
        ):
            raise ValueError(f"version {text!r}: invalid character in version number")
        return cls(epoch, upstream, revision)

    def __str__(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        revision = f"-{self.revision}" if self.revision else ""
        return f"{epoch}{self.upstream}{revision}"


def _order(char: str) -> int:
    """dpkg's weight of one non-digit character: `~` first, then letters, then the rest."""
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(left: str, right: str) -> int:
    """dpkg's verrevcmp: non-digit runs character by character, digit runs as numbers."""
    i = j = 0
    while i < len(left) or j < len(right):
        while (i < len(left) and not left[i].isdigit()) or (
            j < len(right) and not right[j].isdigit()
        ):
            a = _order(left[i]) if i < len(left) and not left[i].isdigit() else 0
            b = _order(right[j]) if j < len(right) and not right[j].isdigit() else 0
            if a != b:
                return -1 if a < b else 1
            i += 1
            j += 1
        start_i = i
        while i < len(left) and left[i].isdigit():
            i += 1
        start_j = j
        while j < len(right) and right[j].isdigit():
            j += 1
        a_num = int(left[start_i:i] or "0")
        b_num = int(right[start_j:j] or "0")
        if a_num != b_num:
            return -1 if a_num < b_num else 1
    return 0


def compare(left: Version, right: Version) -> int:
    """-1, 0 or 1, as left is older than, equal to or newer than right."""
    if left.epoch != right.epoch:
        return -1 if left.epoch < right.epoch else 1
    return _compare_part(left.upstream, right.upstream) or _compare_part(
        left.revision, right.revision
    )


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Version:
    return Version.parse(text)


def compare_versions(left: str, right: str) -> int:
    """Compare two version strings; an empty string is no version (older than any)."""
    if not left or not right:
        return (bool(left) > bool(right)) - (bool(left) < bool(right))
    return compare(_parsed(left), _parsed(right))


def is_newer(candidate: str | None, installed: str | None) -> bool:
    """Whether `candidate` would upgrade `installed` (both known, candidate strictly newer)."""
    if not candidate or not installed:
        return False
    return compare_versions(candidate, installed) > 0
