"""Detection on systemd hosts: live processes mapped to their units through their cgroups (also
sandboxed units in their own mount namespace), apt's hooks reconciling what deb-systemd-invoke
skipped, and Debian's needrestart told to list instead of restarting. cmp2 is this module's."""

from __future__ import annotations

import json

import pytest

from interlock.lab.lab import Lab
from systemd.conftest import sh, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

HOST = "cmp2"
APT = "DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y --no-download"


@pytest.fixture(scope="module")
def host(sdlab: Lab, installed: object) -> Lab:
    sh_ok(sdlab, HOST, "interlock detect install-hooks && interlock auto-restarts off")
    sh_ok(sdlab, HOST, "systemctl enable --now memcached.service")
    return sdlab


def owed(lab: Lab) -> dict[str, str]:
    document = json.loads(sh_ok(lab, HOST, "interlock show --json"))
    return {event["service"]: event["reason"] for event in document["restarts"]}


def test_processes_on_replaced_binaries_are_mapped_to_their_units(host: Lab) -> None:
    pids = {
        unit: int(unit_property(host, HOST, f"{unit}.service", "MainPID"))
        for unit in ("cron", "memcached")
    }
    # memcached runs sandboxed (PrivateTmp=, ProtectSystem=): in its own mount namespace.
    assert sh_ok(host, HOST, f"readlink /proc/{pids['memcached']}/ns/mnt") != sh_ok(
        host, HOST, "readlink /proc/self/ns/mnt"
    )
    sh_ok(host, HOST, "dpkg -i /var/local/debs/cron_*.deb /var/local/debs/memcached_*.deb 2>&1")
    result = sh(host, HOST, "interlock detect --json")
    report = json.loads(result.stdout)
    found = {f["service"]: f for f in report["processes"]["findings"]}
    assert found["cron"]["pid"] == pids["cron"]
    assert found["cron"]["files"] == ["/usr/sbin/cron (replaced)"]
    assert found["memcached"]["pid"] == pids["memcached"]
    assert found["memcached"]["files"] == ["/usr/bin/memcached (replaced)"]
    assert report["processes"]["other_mount_namespace"] == []
    for unit, pid in pids.items():
        cgroup = sh_ok(host, HOST, f"cat /proc/{pid}/cgroup").splitlines()[-1]
        assert cgroup == f"0::/system.slice/{unit}.service"


def test_apt_hooks_owe_what_deb_systemd_invoke_never_asked_and_needrestart_only_lists(
    host: Lab,
) -> None:
    sshd = unit_property(host, HOST, "ssh.service", "InvocationID")
    memcached = unit_property(host, HOST, "memcached.service", "InvocationID")
    result = sh(host, HOST, f"{APT} openssh-server memcached 2>&1")
    assert result.returncode == 0, result.stdout
    said = result.stdout
    # deb-systemd-invoke stopped at rescue-ssh.target: ssh.service was never asked about.
    assert (
        "/usr/sbin/policy-rc.d returned 101, not running 'restart rescue-ssh.target ssh.service'"
        in said
    )
    assert "restart of ssh.service deferred" not in said
    # needrestart ran (its own apt hook) and listed instead of restarting.
    assert "Services to be restarted:" in said
    assert "systemctl restart ssh.service" in said
    assert unit_property(host, HOST, "ssh.service", "InvocationID") == sshd
    assert unit_property(host, HOST, "memcached.service", "InvocationID") == memcached
    reasons = owed(host)
    assert reasons["ssh"].startswith("Package update: openssh-server ")
    assert reasons["memcached"].startswith("Package update: memcached ")
    log = sh_ok(host, HOST, "cat /var/log/interlock/apt-hooks.log")
    assert "post-invoke: ssh: refused during the transaction" in log
    snippet = sh_ok(host, HOST, "cat /etc/needrestart/conf.d/zz-interlock.conf")
    assert "$nrconf{restart} = 'l';" in snippet
