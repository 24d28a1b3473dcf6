"""Sectioned output: bodies come back exactly as printed, and markers are unpredictable."""

from __future__ import annotations

import subprocess

from interlock.facts.sections import new_marker, split_sections


def test_bodies_are_exactly_what_was_printed() -> None:
    marker = new_marker()
    script = (
        'm=$1; echo "$m a b"; printf "x\\n"; echo; echo "$m empty"; '
        'echo "$m no-newline"; printf "y"; echo; echo "$m last"; printf "z\\n\\n"; echo'
    )
    output = subprocess.run(
        ["sh", "-c", script, "sh", marker], capture_output=True, text=True, check=True
    ).stdout
    assert split_sections("noise\n" + output, marker) == [
        (["a", "b"], "x\n"),
        (["empty"], ""),
        (["no-newline"], "y"),
        (["last"], "z\n\n"),
    ]
    assert split_sections("", marker) == []
    assert split_sections(f"{marker} cut", marker) == [(["cut"], "")]


def test_markers_differ_on_every_read() -> None:
    assert len({new_marker() for _ in range(1000)}) == 1000
