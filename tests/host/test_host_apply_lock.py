"""check and restart wait for each other: a resumed rollout never judges a half-done restart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from interlock.host.apply import apply_lock
from interlock.host.paths import HostPaths


def test_check_waits_while_another_apply_holds_the_lock(tmp_path: Path) -> None:
    paths = HostPaths.under(tmp_path)
    with apply_lock(paths):
        check = subprocess.Popen(
            [sys.executable, "-m", "interlock.cli.main", "--root", str(tmp_path), "check"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)
            assert check.poll() is None, "check ran while a restart held the apply lock"
        except BaseException:
            check.kill()
            raise
    out, err = check.communicate(timeout=60)
    assert check.returncode == 0, err
    assert "0 cleared, 0 still pending" in out
