"""Ansible-style host patterns (`--limit`): which inventory hosts a command acts on.

Terms are separated by `:` (or by `,`, which also lets IPv6 names through). A plain term adds
hosts, `&term` keeps only hosts also in it, `!term` removes hosts. As in Ansible, unions apply
first, then intersections, then exclusions, whatever their order in the pattern; a pattern of
only `&`/`!` terms starts from all hosts. A term is `all` (or `*`), a host or group name, a glob
(`cmp*`, `rack[12]-*`), a regular expression after `~` (matched from the start), optionally with
a subscript on the hosts it matched: `[0]`, `[-1]`, `[2:5]` (inclusive, as in Ansible), `[3:]`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from interlock.errors import UsageError

# Indexes of up to 9 digits: longer ones are no host's position (and Python refuses to
# convert numbers of thousands of digits).
_SUBSCRIPT_RE = re.compile(
    r"(?P<body>.+)\[(?:(?P<index>-?\d{1,9})|(?P<start>-?\d{0,9}):(?P<end>-?\d{0,9}))\]"
)
_GLOB_CHARS = frozenset("*?[")


def _quoted(text: str) -> str:
    """A pattern or term in an error message, bounded: the message stays one readable line."""
    return repr(text if len(text) <= 80 else text[:80] + "…")


class HostPatternError(UsageError):
    """A --limit pattern that is malformed or names a host or group the inventory lacks."""


def split_pattern(pattern: str) -> list[str]:
    """The terms of a pattern; `:` inside a subscript or a glob class does not separate."""
    if "," in pattern:
        parts = pattern.split(",")
    else:
        parts, current, depth = [], "", 0
        for char in pattern:
            if char == "[":
                depth += 1
            elif char == "]":
                depth = max(depth - 1, 0)
            if char == ":" and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
    terms = [part.strip() for part in parts if part.strip()]
    if not terms:
        raise HostPatternError(f"empty host pattern {_quoted(pattern)}")
    return terms


def select_hosts(
    pattern: str, hosts: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> list[str]:
    """Host names the pattern selects, in the order of `hosts`."""
    terms = split_pattern(pattern)
    unions = [t for t in terms if t[0] not in "&!"]
    intersections = [t[1:] for t in terms if t[0] == "&"]
    exclusions = [t[1:] for t in terms if t[0] == "!"]
    selected: set[str] = set()
    for term in unions or ["all"]:
        selected |= set(_match_term(term, hosts, groups))
    for term in intersections:
        selected &= set(_match_term(term, hosts, groups))
    for term in exclusions:
        selected -= set(_match_term(term, hosts, groups))
    return [name for name in hosts if name in selected]


def _match_term(term: str, hosts: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    if not term:
        raise HostPatternError("'&' and '!' must be followed by a host or group")
    subscript = _SUBSCRIPT_RE.fullmatch(term)
    if subscript and not term.startswith("~"):
        matched = _match_body(subscript["body"], hosts, groups)
        return _apply_subscript(term, matched, subscript)
    return _match_body(term, hosts, groups)


def _match_body(body: str, hosts: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    if body in ("all", "*"):
        return list(hosts)
    found: set[str] = set()
    known = False
    if body.startswith("~"):
        try:
            regex = re.compile(body[1:])
        except re.error as exc:
            raise HostPatternError(
                f"invalid regular expression in {_quoted(body)}: {exc}"
            ) from None
        group_names = [g for g in groups if regex.match(g)]
        found.update(h for h in hosts if regex.match(h))
    elif _GLOB_CHARS & set(body):
        group_names = [g for g in groups if fnmatch.fnmatchcase(g, body)]
        found.update(h for h in hosts if fnmatch.fnmatchcase(h, body))
    else:
        group_names = [body] if body in groups else []
        if body in hosts:
            found.add(body)
    for group in group_names:
        known = True
        found.update(groups[group])
    if not found and not known:
        raise HostPatternError(f"{_quoted(body)} matches no host or group in the inventory")
    return [name for name in hosts if name in found]


def _apply_subscript(term: str, matched: list[str], subscript: re.Match[str]) -> list[str]:
    count = len(matched)
    if subscript["index"] is not None:
        index = int(subscript["index"])
        if not -count <= index < count:
            raise HostPatternError(
                f"{_quoted(term)}: index {index} is out of range ({count} hosts)"
            )
        return [matched[index]]
    start = int(subscript["start"]) if subscript["start"] else 0
    end = int(subscript["end"]) if subscript["end"] else count - 1
    start, end = (start + count if start < 0 else start), (end + count if end < 0 else end)
    if not 0 <= start < count or end < start:
        raise HostPatternError(f"{_quoted(term)}: range is out of bounds ({count} hosts)")
    return matched[start : end + 1]
