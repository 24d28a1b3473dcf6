"""Hold (stop + disable + mask) and release (unmask + enable + start) on a real sysv lab host,
with the real invoke-rc.d and update-rc.d; the systemd branch against a recording systemctl
(systemd cannot run here), in the same host's private /run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab
from interlock.upgrade import steps

pytestmark = [
    pytest.mark.lab,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

RECORDING_SYSTEMCTL = """\
#!/bin/sh
# Records its arguments; answers like systemd for one enabled, loaded unit.
echo "$*" >> /run/systemctl.log
name=$(echo "$*" | awk '{print $NF}')
case "$*" in
    *is-enabled*) if [ -e "/run/masked-$name" ]; then echo masked; exit 1; fi; echo enabled ;;
    *" mask "*) touch "/run/masked-$name" ;;
    *unmask*) rm -f "/run/masked-$name" ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("hold"), hosts=2, controllers=2, lbs=0) as lab:
        for host in ("ctl1", "ctl2"):
            # /usr/sbin is the host's own overlay: only then may its policy-rc.d go.
            fstype = lab.exec(host, ["findmnt", "-n", "-o", "FSTYPE", "/usr/sbin"], check=True)
            assert fstype.stdout.strip() == b"overlay"
            lab.exec(host, ["rm", "-f", "/usr/sbin/policy-rc.d"], check=True)
        yield lab


def sh(lab: Lab, host: str, script: str) -> tuple[int, str, str]:
    result = lab.exec(host, ["sh", "-c", script])
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def run(lab: Lab, host: str, argv: tuple[str, ...]) -> None:
    result = lab.exec(host, list(argv))
    assert result.returncode == 0, result.stderr.decode()


def running(lab: Lab, host: str) -> bool:
    return sh(lab, host, "/etc/init.d/lab-api status >/dev/null")[0] == 0


def links(lab: Lab, host: str) -> str:
    return sh(lab, host, "ls /etc/rc2.d | grep lab-api")[1].strip()


def test_sysv_hold_keeps_a_package_restart_away_until_the_release(lab: Lab) -> None:
    assert running(lab, "ctl1") and links(lab, "ctl1") == "S01lab-api"
    run(lab, "ctl1", steps.hold(["lab-api"]).argv)
    assert not running(lab, "ctl1")
    assert links(lab, "ctl1") == "K01lab-api"
    assert sh(lab, "ctl1", "cat /var/lib/interlock/held/lab-api")[1] == "enabled\n"
    policy = sh(lab, "ctl1", "cat /etc/policy-rc.d/interlock-upgrade-lab-api.policy")[1]
    assert "  'lab-api': [start, restart, try-restart, reload, force-reload]" in policy
    assert "policy_requestor_type: interlock" in policy
    # What a package's postinst does on upgrade: invoke-rc.d refuses (a disabled service).
    code, _, _ = sh(lab, "ctl1", "invoke-rc.d lab-api restart")
    assert code == 0 and not running(lab, "ctl1")
    # Holding again changes nothing (a resumed run asks twice).
    run(lab, "ctl1", steps.hold(["lab-api"]).argv)
    assert sh(lab, "ctl1", "cat /var/lib/interlock/held/lab-api")[1] == "enabled\n"
    run(lab, "ctl1", steps.release(["lab-api"]).argv)
    assert running(lab, "ctl1") and links(lab, "ctl1") == "S01lab-api"
    assert sh(lab, "ctl1", "ls /var/lib/interlock/held /etc/policy-rc.d")[1].split() == [
        "/etc/policy-rc.d:",
        "/var/lib/interlock/held:",
    ]
    # Releasing again is harmless too.
    run(lab, "ctl1", steps.release(["lab-api"]).argv)
    assert running(lab, "ctl1")


def test_a_service_disabled_before_the_hold_stays_disabled(lab: Lab) -> None:
    sh(lab, "ctl2", "/etc/init.d/lab-api stop; update-rc.d lab-api disable >/dev/null 2>&1")
    run(lab, "ctl2", steps.hold(["lab-api"]).argv)
    assert sh(lab, "ctl2", "cat /var/lib/interlock/held/lab-api")[1] == "disabled\n"
    result = lab.exec("ctl2", list(steps.release(["lab-api"]).argv))
    assert result.returncode == 0
    assert b"stays disabled and stopped" in result.stderr
    assert not running(lab, "ctl2") and links(lab, "ctl2") == "K01lab-api"
    hold = lab.exec("ctl2", list(steps.hold(["no-such-service"]).argv))
    assert hold.returncode != 0 and b"hold: no service no-such-service" in hold.stderr


def test_systemd_hold_and_release_call_systemctl_in_order(lab: Lab) -> None:
    host = "ctl2"
    lab.write_host_file(host, "/usr/sbin/systemctl", RECORDING_SYSTEMCTL, 0o755)
    sh(lab, host, "mkdir -p /run/systemd/system")
    try:
        run(lab, host, steps.hold(["nova-api"]).argv)
        policy = "/etc/policy-rc.d/interlock-upgrade-nova-api.policy"
        assert sh(lab, host, f"test -e {policy}")[0] == 0
        run(lab, host, steps.hold(["nova-api"]).argv)
        run(lab, host, steps.release(["nova-api"]).argv)
        log = sh(lab, host, "cat /run/systemctl.log")[1].splitlines()
        assert log == [
            "-q is-enabled nova-api",
            "stop nova-api",
            "is-enabled nova-api",
            "-q disable nova-api",
            "-q mask nova-api",
            # held again: already masked, only stopped again
            "stop nova-api",
            "is-enabled nova-api",
            "-q unmask nova-api",
            "-q enable nova-api",
            "start nova-api",
        ]
        assert sh(lab, host, f"test -e {policy} || test -e /var/lib/interlock/held/nova-api")[0]
    finally:
        sh(lab, host, "rm -rf /run/systemd /usr/sbin/systemctl /run/systemctl.log")
