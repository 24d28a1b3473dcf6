from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.loopback_sshd import SshdFleet

FIXTURES = Path(__file__).parent / "fixtures"
FLEET_SIZE = 20


@pytest.fixture(scope="session")
def sshd_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFleet]:
    """20 real sshd servers on 127.0.0.2-21, shared by the transport tests of a run."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs root, unshare and OpenSSH's sshd")
    fleet = SshdFleet(tmp_path_factory.mktemp("sshd-fleet"), FLEET_SIZE)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
