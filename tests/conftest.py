"""Suite-wide guard: tests must leave no network namespace, overlay mount or lab process behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _leftovers() -> set[str]:
    found = set()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    found |= {f"netns {line.split()[0]}" for line in netns.stdout.splitlines() if line.strip()}
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "overlay" or fields[1].startswith("/run/netns"):
            found.add(f"mount {fields[1]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = _leftovers()
    yield
    left = _leftovers() - before
    assert not left, f"tests left these behind: {sorted(left)}"
