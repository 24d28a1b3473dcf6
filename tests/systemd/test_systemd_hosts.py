"""systemd lab hosts: systemd is PID 1 on a private root, sshd is its unit, and `down` leaves
nothing behind (processes, namespaces, links, cgroups), also after a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import pick_name, pick_subnet
from systemd.conftest import HOSTS, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]


def test_every_host_boots_systemd_as_pid_1_with_sshd_as_its_unit(sdlab: Lab) -> None:
    for host in HOSTS:
        out = sh_ok(
            sdlab,
            host,
            "hostname; cat /proc/1/comm; systemctl is-system-running; "
            "cut -d: -f3 /proc/self/cgroup | tail -1",
        ).split()
        failed = sh_ok(sdlab, host, "systemctl --failed --no-legend")
        assert out == [host, "systemd", "running", "/system.slice/ssh.service"], failed


def test_hosts_see_their_own_root_and_read_only_kernel_settings(sdlab: Lab) -> None:
    mounts = sh_ok(sdlab, "cmp1", "findmnt -rn -o TARGET,FSTYPE,OPTIONS")
    table = {line.split()[0]: line.split()[1:] for line in mounts.splitlines()}
    assert table["/"][0] == "overlay"
    assert "/interlock-lab/images/" in table["/"][1]
    assert table["/proc/sys"][1].startswith("ro,")
    assert table["/sys"][1].startswith("ro,")
    assert table["/sys/fs/cgroup"][0] == "cgroup2"
    for private in ("/dev", "/run", "/tmp"):
        assert table[private][0] == "tmpfs"
    # Nothing of the machine's own tree is mounted in a host.
    assert not any(target.startswith(("/var/tmp", "/work", "/mnt")) for target in table)
    refused = sh_ok(sdlab, "cmp1", "echo 1 > /proc/sys/kernel/sysrq 2>&1 || echo refused")
    assert "refused" in refused


def test_role_daemons_are_units(sdlab: Lab) -> None:
    assert unit_property(sdlab, "lb1", "haproxy.service", "ActiveState") == "active"
    for host in ("ctl1", "ctl2"):
        assert unit_property(sdlab, host, "lab-api.service", "ActiveState") == "active"
    assert unit_property(sdlab, "ctl1", "cron.service", "ActiveState") == "active"
    answer = sh_ok(
        sdlab,
        "cmp1",
        'python3 -c "import urllib.request as u; '
        "print(u.urlopen('http://lb1/health', timeout=5).status)\"",
    )
    assert answer.strip() == "200"


def test_inventory_labels_systemd_hosts(sdlab: Lab) -> None:
    document = yaml.safe_load(sdlab.inventory_path.read_text())
    assert {name: h["labels"]["kind"] for name, h in document["hosts"].items()} == dict.fromkeys(
        HOSTS, "systemd"
    )


def test_down_leaves_nothing_even_after_a_crash(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "crash", name=pick_name(), subnet=pick_subnet())
    try:
        lab.up(hosts=2, controllers=1, lbs=0, systemd=1)
        state = lab.state()
        assert [h.kind for h in state.hosts] == ["systemd", "sysv"]
        before = processes.snapshot(lab.processes())
        assert len(before) > 5  # systemd, journald, dbus, sshd, cron ... and the sysv host
        # A crash of the lab's parent process: the hosts stay, `down` must still find them all.
        assert state.keeper_pid is not None
        os.kill(state.keeper_pid, signal.SIGKILL)
    finally:
        lab.down()
    assert lab.leftovers(before) == []
    again = lab.down()
    assert again.processes_killed == 0
    assert lab.leftovers(before) == []
