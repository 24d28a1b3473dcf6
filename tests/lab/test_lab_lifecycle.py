"""Building and tearing down labs: PID-namespace host crashes, and `down` after a crashed `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interlock.lab import network, processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import pick_name, pick_subnet, running_lab
from interlock.lab.state import BOOTING, load_state

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")


def ssh_hostname(lab: Lab, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lab.ssh_argv(host, ["hostname"]), capture_output=True, text=True, timeout=20, check=False
    )


def wait_until(condition: object, timeout: float = 10.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_killing_a_pid_namespace_hosts_sshd_crashes_the_whole_host(tmp_path: Path) -> None:
    with running_lab(tmp_path, hosts=4, controllers=2, lbs=0, pid_namespace=True) as lab:
        ctl1 = lab.state().host("ctl1")
        inside = lab.exec("ctl1", ["sh", "-c", "cat /run/sshd.pid /run/lab-api.pid"], check=True)
        assert inside.stdout.split()[0] == b"1"  # sshd is the host's init
        host_pids = [pid for pid, host in lab.processes().items() if host == "ctl1"]
        assert ctl1.pid in host_pids and len(host_pids) >= 2  # sshd and lab-api at least
        crashed = processes.snapshot(host_pids)

        assert ctl1.pid is not None
        os.kill(ctl1.pid, signal.SIGKILL)

        assert wait_until(lambda: "ctl1" not in lab.processes().values())
        assert processes.survivors(crashed) == []
        assert ssh_hostname(lab, "ctl1").returncode != 0
        assert ssh_hostname(lab, "ctl2").stdout.strip() == "ctl2"
        status = {h.name: h for h in lab.status().hosts}
        assert not status["ctl1"].running and status["ctl1"].sshd is None
        assert status["ctl2"].running and status["ctl2"].api_healthy
        before = processes.snapshot(lab.processes())
    assert lab.leftovers(before) == []


def test_down_removes_everything_and_is_idempotent(tmp_path: Path) -> None:
    lab = Lab(tmp_path, name=pick_name(), subnet=pick_subnet())
    try:
        lab.up(hosts=5, controllers=1, lbs=1)
        keeper = lab.state().keeper_pid
        assert keeper is not None
        before = processes.snapshot([*lab.processes(), keeper])
        assert len(before) >= 5 + 3  # an sshd per host, lab-api, haproxy, crons, the keeper
    finally:
        first = lab.down()
    assert first.found and first.processes_killed >= len(before) - 1
    assert lab.leftovers(before) == []
    assert not (tmp_path / "lab.json").exists() and not (tmp_path / "hosts").exists()
    assert not lab.down().found


def _booting(directory: Path) -> bool:
    state = load_state(directory)
    return state is not None and state.phase == BOOTING


def _network_built(name: str) -> bool:
    return bool(network.link_names(f"{name}-"))


@pytest.mark.parametrize("moment", ["network built", "hosts booting"])
def test_down_cleans_up_after_an_up_that_was_killed(tmp_path: Path, moment: str) -> None:
    name, subnet = pick_name(), pick_subnet()
    script = (
        "import sys; from interlock.lab.lab import Lab; "
        "Lab(sys.argv[1], name=sys.argv[2], subnet=sys.argv[3]).up(hosts=12, controllers=2, lbs=1)"
    )
    runner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name, subnet])
    lab = Lab(tmp_path, name=name)
    before: dict[int, int] = {}
    try:
        if moment == "network built":
            reached = wait_until(lambda: _network_built(name), timeout=30)
        else:
            reached = wait_until(lambda: _booting(tmp_path), timeout=30)
        runner.kill()
        runner.wait()
        assert reached, f"up never reached the moment: {moment}"
        state = load_state(tmp_path)
        assert state is not None and state.phase != "up"
        if moment == "hosts booting":
            before = processes.snapshot(lab.processes())
            assert before, "the killed up left no host processes: nothing was tested"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        report = lab.down()
    assert report.found
    assert lab.leftovers(before) == []
