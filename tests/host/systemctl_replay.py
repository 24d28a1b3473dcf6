"""Run a command where /usr/bin/systemctl is a replay script of the test's (a private mount
namespace: the script is bound over systemctl, /run is a tmpfs holding /run/systemd/system, so
interlock picks its systemd backend). Nothing starts systemd, and the machine's systemctl and
/run stay untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def install_replay(tmp_path: Path, source: str) -> tuple[Path, Path]:
    """The replay script (its `{config}` filled in) and the config file it reads."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    config = tmp_path / "replay.json"
    script = tmp_path / "systemctl"
    script.write_text(f"#!/usr/bin/python3 -I\n{source.replace('{config}', str(config))}")
    script.chmod(0o755)
    return script, config


def run_replayed(script: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    setup = (
        "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/system; "
        f'mount --bind {script} /usr/bin/systemctl; exec "$@"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
