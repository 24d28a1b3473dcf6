"""The gate on systemd hosts, asked by Debian's real invoke-rc.d and deb-systemd-invoke.

On a systemd host a maintainer script asks twice per action: invoke-rc.d with a runlevel
(`cron restart 5`), then deb-systemd-invoke with unit names and no runlevel (`cron.service
restart`; openssh-server also `rescue-ssh.target restart` and `ssh.socket restart`). Host cmp1 is
this module's: a policy there blocks cron and openssh-server's units.
"""

from __future__ import annotations

import json

import pytest

from interlock.lab.lab import Lab
from systemd.conftest import sh, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

HOST = "cmp1"
POLICY = """blocked_actions:
  cron: [restart, stop, try-restart]
  ssh: [restart, stop, try-restart]
  ssh.socket: [restart, stop, try-restart]
  rescue-ssh.target: [restart, stop, try-restart]
policy_requestor_name: lab-test
policy_requestor_type: test
"""
DPKG = "DEBIAN_FRONTEND=noninteractive dpkg -i"


@pytest.fixture(scope="module")
def blocked(sdlab: Lab, installed: object) -> Lab:
    sdlab.write_host_file(HOST, "/etc/policy-rc.d/lab-test.policy", POLICY, 0o600)
    return sdlab


def events(lab: Lab) -> list[tuple[str, str]]:
    document = json.loads(sh_ok(lab, HOST, "interlock show --json"))
    return sorted((e["service"], e["action"]) for e in document["restarts"])


def test_invoke_rc_d_and_deb_systemd_invoke_are_refused_and_recorded_once(blocked: Lab) -> None:
    started = unit_property(blocked, HOST, "cron.service", "InvocationID")
    first = sh(blocked, HOST, "invoke-rc.d cron restart")
    assert "invoke-rc.d: policy-rc.d denied execution of restart." in first.stderr
    second = sh(blocked, HOST, "deb-systemd-invoke restart cron.service")
    assert "/usr/sbin/policy-rc.d returned 101, not running 'restart cron.service'" in second.stderr
    assert unit_property(blocked, HOST, "cron.service", "InvocationID") == started
    assert ("cron", "restart") in events(blocked)
    assert [e for e in events(blocked) if e[0] == "cron"] == [("cron", "restart")]


def test_a_package_reinstall_asks_both_ways_and_restarts_nothing(blocked: Lab) -> None:
    cron = unit_property(blocked, HOST, "cron.service", "InvocationID")
    ssh = unit_property(blocked, HOST, "ssh.service", "InvocationID")
    result = sh(
        blocked, HOST, f"{DPKG} /var/local/debs/cron_*.deb /var/local/debs/openssh-server_*.deb"
    )
    assert result.returncode == 0, result.stderr
    said = result.stderr.splitlines()
    assert said.count("invoke-rc.d: policy-rc.d denied execution of restart.") == 2  # cron, ssh
    for refused in (
        "restart cron.service",
        "restart rescue-ssh.target ssh.service",
        "restart ssh.socket",
    ):
        assert f"/usr/sbin/policy-rc.d returned 101, not running '{refused}'" in said
    # deb-systemd-invoke stopped at rescue-ssh.target: it never asked about ssh.service.
    assert "restart of ssh.service deferred" not in result.stderr
    assert unit_property(blocked, HOST, "cron.service", "InvocationID") == cron
    assert unit_property(blocked, HOST, "ssh.service", "InvocationID") == ssh
    # One event per refused service, however many times it was asked.
    assert events(blocked) == [
        ("cron", "restart"),
        ("rescue-ssh.target", "restart"),
        ("ssh", "restart"),
        ("ssh.socket", "restart"),
    ]
