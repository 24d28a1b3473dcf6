"""`interlock restart` and `interlock check` through systemctl on systemd hosts, verified by each
unit's InvocationID: a unit that fails to start, socket activation (ssh.socket) and a daemon that
forks (haproxy's master and worker). cmp3 and lb1 are this module's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from interlock.lab.lab import Lab
from systemd.conftest import sh, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

HOST = "cmp3"
BROKEN_UNIT = """[Unit]
Description=A service whose start fails while /etc/lab-broken.fail exists

[Service]
ExecStartPre=/bin/sh -c '! test -e /etc/lab-broken.fail'
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
POLICY = """blocked_actions:
  lab-broken: [restart]
  cron: [restart]
  ssh.socket: [restart]
policy_requestor_name: lab-test
policy_requestor_type: test
"""


@pytest.fixture(scope="module")
def host(sdlab: Lab, installed: object) -> Lab:
    sdlab.write_host_file(HOST, "/etc/systemd/system/lab-broken.service", BROKEN_UNIT)
    sdlab.write_host_file(HOST, "/etc/policy-rc.d/lab-test.policy", POLICY, 0o600)
    sh_ok(sdlab, HOST, "systemctl daemon-reload && systemctl enable --now lab-broken.service")
    return sdlab


def owed(lab: Lab, host: str) -> list[str]:
    """Services with deferred restarts (deb-systemd-invoke names them `x.service`)."""
    document = json.loads(sh_ok(lab, host, "interlock show --json"))
    return sorted({event["service"].removesuffix(".service") for event in document["restarts"]})


def restart(lab: Lab, host: str, args: str, timeout: int = 10) -> tuple[int, dict[str, Any]]:
    result = sh(lab, host, f"interlock restart --json --timeout {timeout} {args}", timeout=300)
    return result.returncode, json.loads(result.stdout)


def test_a_unit_that_fails_to_start_keeps_its_event_until_it_really_runs(host: Lab) -> None:
    sh_ok(host, HOST, "deb-systemd-invoke restart lab-broken.service")
    assert owed(host, HOST) == ["lab-broken"]
    first = unit_property(host, HOST, "lab-broken.service", "InvocationID")
    sh_ok(host, HOST, "touch /etc/lab-broken.fail")
    code, report = restart(host, HOST, "--deferred-only")
    assert code != 0
    [outcome] = report["outcomes"]
    assert outcome["service"] == "lab-broken" and not outcome["ok"]
    assert "failed" in outcome["detail"]
    assert unit_property(host, HOST, "lab-broken.service", "ActiveState") == "failed"
    assert owed(host, HOST) == ["lab-broken"]  # not restarted: still owed
    sh_ok(host, HOST, "rm /etc/lab-broken.fail")
    code, report = restart(host, HOST, "--deferred-only")
    assert code == 0, report
    assert unit_property(host, HOST, "lab-broken.service", "ActiveState") == "active"
    assert unit_property(host, HOST, "lab-broken.service", "InvocationID") != first
    assert owed(host, HOST) == []


def test_check_clears_only_what_restarted_since(host: Lab) -> None:
    sh_ok(host, HOST, "deb-systemd-invoke restart cron.service lab-broken.service || true")
    sh_ok(host, HOST, "deb-systemd-invoke restart lab-broken.service || true")
    assert owed(host, HOST) == ["cron", "lab-broken"]
    before = unit_property(host, HOST, "cron.service", "InvocationID")
    sh_ok(host, HOST, "sleep 1.1; systemctl restart cron.service")  # behind interlock's back
    assert unit_property(host, HOST, "cron.service", "InvocationID") != before
    result = sh(host, HOST, "interlock check")
    assert result.returncode == 1  # something is still pending
    assert "cleared: cron.service restart (Package update): it has restarted" in result.stdout
    assert "1 cleared, 1 still pending" in result.stdout
    assert owed(host, HOST) == ["lab-broken"]
    sh_ok(host, HOST, "interlock clear lab-broken")


def test_ssh_socket_restarts_with_the_sshd_it_activates(host: Lab) -> None:
    # Debian's default: ssh.service listens, ssh.socket is disabled. openssh-server's scripts
    # still ask for `ssh.socket restart`; deb-systemd-invoke would skip a disabled socket.
    sh_ok(host, HOST, "deb-systemd-invoke restart ssh.socket || true")
    assert owed(host, HOST) == ["ssh.socket"]
    sshd = unit_property(host, HOST, "ssh.service", "InvocationID")
    code, report = restart(host, HOST, "--deferred-only")
    assert code != 0
    assert "ssh.socket is neither running nor enabled (disabled)" in report["outcomes"][0]["detail"]
    assert unit_property(host, HOST, "ssh.service", "InvocationID") == sshd
    assert owed(host, HOST) == ["ssh.socket"]
    # Socket activation (Ubuntu's default): a socket whose sshd runs refuses to start again
    # until that sshd stops, so both restart, and sshd runs on the new socket.
    sh_ok(host, HOST, "systemctl disable ssh.service && systemctl enable ssh.socket")
    code, report = restart(host, HOST, "--deferred-only")
    assert code == 0, report
    assert unit_property(host, HOST, "ssh.socket", "ActiveState") == "active"
    assert unit_property(host, HOST, "ssh.socket", "InvocationID") != ""
    assert unit_property(host, HOST, "ssh.service", "InvocationID") != sshd
    assert owed(host, HOST) == []
    listeners = sh_ok(host, HOST, "ss -Hltnp 'sport = :22'")
    assert '("systemd",pid=1,' in listeners and '("sshd",' in listeners
    assert sh_ok(host, HOST, "hostname").strip() == HOST


def test_haproxy_master_and_workers_are_replaced(host: Lab) -> None:
    lb = "lb1"
    before = unit_property(host, lb, "haproxy.service", "InvocationID")
    master = int(unit_property(host, lb, "haproxy.service", "MainPID"))
    workers = sh_ok(host, lb, f"pgrep -P {master} haproxy").split()
    assert workers
    code, report = restart(host, lb, "haproxy")
    assert code == 0, report
    assert unit_property(host, lb, "haproxy.service", "InvocationID") != before
    new_master = int(unit_property(host, lb, "haproxy.service", "MainPID"))
    assert new_master != master
    new_workers = sh_ok(host, lb, f"pgrep -P {new_master} haproxy").split()
    assert new_workers and not set(new_workers) & set(workers)
    assert (
        sh_ok(
            host,
            lb,
            'python3 -c "import urllib.request as u; '
            f"print(u.urlopen('http://{lb}/health', timeout=5).status)\"",
        ).strip()
        == "200"
    )


def test_debians_daemons_restart_as_new_instances(host: Lab) -> None:
    units = ("memcached", "rabbitmq-server")
    sh_ok(host, HOST, "systemctl start memcached.service rabbitmq-server.service", timeout=180)
    before = {u: unit_property(host, HOST, f"{u}.service", "InvocationID") for u in units}
    pids = {u: unit_property(host, HOST, f"{u}.service", "MainPID") for u in units}
    code, report = restart(host, HOST, " ".join(units), timeout=120)
    assert code == 0, report
    assert [o["service"] for o in report["outcomes"] if o["ok"]] == list(units)
    for unit in units:
        assert unit_property(host, HOST, f"{unit}.service", "ActiveState") == "active"
        assert unit_property(host, HOST, f"{unit}.service", "InvocationID") != before[unit]
        assert unit_property(host, HOST, f"{unit}.service", "MainPID") != pids[unit]
    assert "Status of node" in sh_ok(host, HOST, "rabbitmqctl status", timeout=120)
