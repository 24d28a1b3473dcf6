"""The upgrade's hold and release (stop, disable, mask; unmask, enable, start) on real systemd
units, run as the upgrade runs them on a host. ctl2 is this module's."""

from __future__ import annotations

import shlex

import pytest

from interlock.lab.lab import Lab
from interlock.upgrade import steps
from systemd.conftest import sh, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

HOST = "ctl2"


@pytest.fixture(scope="module")
def host(sdlab: Lab, installed: object) -> Lab:
    # memcached enabled and running; cron running but disabled by its operator.
    sh_ok(sdlab, HOST, "systemctl enable --now memcached.service && systemctl disable cron.service")
    return sdlab


def run(lab: Lab, argv: tuple[str, ...]) -> str:
    return sh_ok(lab, HOST, shlex.join(argv))


def enabled(lab: Lab, unit: str) -> str:
    return sh(lab, HOST, f"systemctl is-enabled {unit}").stdout.strip()


def test_hold_then_release_real_units(host: Lab) -> None:
    before = unit_property(host, HOST, "memcached.service", "InvocationID")
    held = steps.hold(["memcached", "cron"])
    run(host, held.argv)
    run(host, held.argv)  # a resumed upgrade holds again: nothing changes
    for unit in ("memcached", "cron"):
        assert unit_property(host, HOST, f"{unit}.service", "ActiveState") == "inactive"
        assert enabled(host, unit) == "masked"
    # Nothing starts a held service: not a package script, not an operator's systemctl.
    refused = sh(host, HOST, "invoke-rc.d memcached start")
    assert "policy-rc.d denied execution of start" in refused.stderr
    assert sh(host, HOST, "systemctl start memcached").returncode != 0
    assert unit_property(host, HOST, "memcached.service", "ActiveState") == "inactive"

    released = sh(host, HOST, shlex.join(steps.release(["memcached", "cron"]).argv))
    assert released.returncode == 0, released.stderr
    assert enabled(host, "memcached") == "enabled"
    assert unit_property(host, HOST, "memcached.service", "ActiveState") == "active"
    assert unit_property(host, HOST, "memcached.service", "InvocationID") != before
    # What was disabled before the upgrade stays so, and says so.
    assert enabled(host, "cron") == "disabled"
    assert unit_property(host, HOST, "cron.service", "ActiveState") == "inactive"
    assert "cron was disabled before the upgrade" in released.stderr
    assert sh_ok(host, HOST, "ls /etc/policy-rc.d").split() == []
