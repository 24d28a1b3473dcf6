"""The README's demos run end to end and say what the README promises."""

from __future__ import annotations

import subprocess
import sys

import pytest

INTERLOCK = [sys.executable, "-m", "interlock.cli.main"]


def run_demo(name: str) -> str:
    result = subprocess.run(
        [*INTERLOCK, "demo", name],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.root
def test_host_demo_defers_then_applies_the_cron_restart() -> None:
    out = run_demo("host")
    assert "invoke-rc.d: policy-rc.d denied execution of restart." in out
    assert "Services queued for restart: cron" in out
    assert "ok   cron: restarted (pid" in out
    assert out.count("No restarts or hooks deferred") >= 1


@pytest.mark.lab
def test_lab_demo_pays_back_every_deferred_restart_with_zero_failed_requests() -> None:
    out = run_demo("lab")
    assert out.count("invoke-rc.d: policy-rc.d denied execution of restart.") == 7
    assert ", 0 failed;" in out
    assert "8 hosts read in" in out and "0 with deferred work" in out
