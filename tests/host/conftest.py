from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from host.gate_env import GateEnv, make_gate_env
from host.host_namespace import MACHINE_DIRS, Namespace


@pytest.fixture
def gate(tmp_path: Path) -> GateEnv:
    """The generated gate script, configured to use directories under tmp_path."""
    return make_gate_env(tmp_path / "gate")


@pytest.fixture(scope="session")
def machine_dirs() -> Iterator[None]:
    """Mount points for the namespace's policy and ledger binds (created only if absent)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("needs root, unshare and nsenter")
    created = []
    for directory in MACHINE_DIRS:
        if not directory.exists():
            directory.mkdir(mode=0o755)
            created.append(directory)
    try:
        yield
    finally:
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                pass  # something else put files there meanwhile: leave them alone


@pytest.fixture
def namespace(
    machine_dirs: None, gate: GateEnv, tmp_path: Path
) -> Iterator[Callable[..., Namespace]]:
    """Start namespaces (gate bound over /usr/sbin/policy-rc.d); all are killed at teardown."""
    numbers = itertools.count()
    with ExitStack() as started:

        def start(runlevel: str | None = "2") -> Namespace:
            workdir = tmp_path / f"ns{next(numbers)}"
            return started.enter_context(Namespace(gate, workdir, runlevel))

        yield start
