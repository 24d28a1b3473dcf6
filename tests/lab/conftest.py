"""Fixtures for lab tests: one shared lab per module, always torn down."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")


@pytest.fixture(scope="module")
def lab20(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """20 hosts: lb1, ctl1-ctl2, cmp1-cmp17, in their own network, mount and UTS namespaces."""
    require_root()
    with running_lab(tmp_path_factory.mktemp("lab20"), hosts=20, controllers=2, lbs=1) as lab:
        before = processes.snapshot(lab.processes())
        yield lab
        before |= processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"
