"""The main demo on systemd hosts: the APIs as units behind Debian's haproxy.service, refused by
the real deb-systemd-invoke, restarted by a rollout under load with no failed request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]


def test_lab_demo_on_systemd_hosts_pays_back_every_restart_with_zero_failed_requests() -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    result = subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", "demo", "lab", "--systemd"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    refused = "/usr/sbin/policy-rc.d returned 101, not running 'restart lab-api.service'"
    assert out.count(refused) == 3
    assert out.count("invoke-rc.d: policy-rc.d denied execution of restart.") == 4
    assert out.count("restarted lab-api") == 3
    assert ", 0 failed;" in out
    assert "8 hosts read in" in out and "0 with deferred work" in out
