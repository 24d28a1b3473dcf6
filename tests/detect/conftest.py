from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from detect.detect_sandbox import Sandbox, make_sandbox

ROOT_TOOLS = ("unshare", "nsenter", "start-stop-daemon", "invoke-rc.d")


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path / "sandbox")


@pytest.fixture(scope="session")
def namespaces_available() -> None:
    missing = [tool for tool in ROOT_TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {', '.join(ROOT_TOOLS)} (missing: {missing})")
