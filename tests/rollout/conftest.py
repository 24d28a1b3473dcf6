"""Fixtures of the rollout tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.rollout_processes import Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()
