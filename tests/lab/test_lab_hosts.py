"""A 20-host lab: every host answers over SSH as itself, keeps its own policy-rc.d files, and its
sysv services restart through invoke-rc.d inside the host while haproxy follows."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from interlock.cli import lab as lab_cli
from interlock.lab.errors import LabError
from interlock.lab.lab import Lab, UpReport
from interlock.lb.stats import parse_show_stat

pytestmark = pytest.mark.lab

ALLOW_ALL = "#!/bin/sh\nexit 0\n"
ADMIN_SOCKET_QUERY = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(sys.argv[1].encode() + b"\\n")
reply = b""
while chunk := s.recv(65536):
    reply += chunk
sys.stdout.write(reply.decode())
"""


def ssh(lab: Lab, host: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=timeout, check=False
    )


def ssh_ok(lab: Lab, host: str, command: str) -> str:
    result = ssh(lab, host, command)
    assert result.returncode == 0, f"{host}: {command}: {result.stderr}"
    return result.stdout


def admin_socket(lab: Lab, lb: str, command: str) -> str:
    """A runtime-API command through the admin socket inside the lb host (not the TCP port)."""
    result = lab.exec(lb, ["python3", "-I", "-c", ADMIN_SOCKET_QUERY, command], check=True)
    return result.stdout.decode()


def wait_all_up(lab: Lab, lb: str, servers: set[str], timeout: float = 15) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {
            s.name: s.status
            for s in parse_show_stat(admin_socket(lab, lb, "show stat"))
            if s.kind == "server"
        }
        if all(states.get(name) == "UP" for name in servers) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_every_host_answers_ssh_with_its_own_hostname(lab20: Lab) -> None:
    hosts = [h.name for h in lab20.state().hosts]
    assert len(hosts) == 20

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(
            zip(hosts, pool.map(lambda h: ssh_ok(lab20, h, "hostname"), hosts), strict=True)
        )

    assert {host: answer.strip() for host, answer in answers.items()} == {h: h for h in hosts}


def test_inventory_lists_every_host_with_its_address_and_role(lab20: Lab) -> None:
    document = yaml.load(lab20.inventory_path.read_text(), Loader=yaml.CSafeLoader)
    state = lab20.state()

    assert document["defaults"]["key"] == str(lab20.client_key)
    assert document["known_hosts"] == str(lab20.known_hosts)
    assert {name: h["address"] for name, h in document["hosts"].items()} == {
        h.name: h.address for h in state.hosts
    }
    assert document["hosts"]["ctl2"]["groups"] == ["controllers"]
    assert document["hosts"]["ctl2"]["labels"] == {"az": "az2", "role": "controller"}
    assert document["hosts"]["cmp4"]["labels"] == {"az": "az1", "role": "compute"}
    assert document["loadbalancers"] == {
        "lb1": {"host": "lb1", "socket": "/run/haproxy/admin.sock"}
    }
    pattern = lab20.known_hosts.read_text().split()[0]
    assert pattern.endswith(".*") and state.hosts[0].address.startswith(pattern[:-1])


def test_policy_rc_d_files_are_private_to_each_host(lab20: Lab) -> None:
    machine_gate = Path("/usr/sbin/policy-rc.d").read_bytes()
    fresh = "ls -A /etc/policy-rc.d /var/lib/policy-rc.d"
    assert ssh_ok(lab20, "cmp2", fresh).split() == ["/etc/policy-rc.d:", "/var/lib/policy-rc.d:"]
    machine_policies = sorted(p.name for p in Path("/etc").glob("policy-rc.d/*"))

    ssh_ok(
        lab20,
        "cmp1",
        "mkdir -p /etc/policy-rc.d /var/lib/policy-rc.d && "
        "echo 'blocked_actions: {cron: [restart]}' > /etc/policy-rc.d/lab-test.policy && "
        "echo 'service: cron' > /var/lib/policy-rc.d/lab-test.deferred",
    )
    lab20.write_host_file("cmp1", "/usr/sbin/policy-rc.d", ALLOW_ALL, 0o755)

    seen_on_cmp1 = ssh_ok(
        lab20,
        "cmp1",
        "cat /etc/policy-rc.d/lab-test.policy /var/lib/policy-rc.d/lab-test.deferred "
        "/usr/sbin/policy-rc.d",
    )
    assert "blocked_actions" in seen_on_cmp1 and "service: cron" in seen_on_cmp1
    assert "exit 0" in seen_on_cmp1
    absent = ssh(
        lab20, "cmp2", "ls /etc/policy-rc.d/lab-test.policy /var/lib/policy-rc.d/lab-test.deferred"
    )
    assert absent.returncode != 0
    assert "No such file" in absent.stderr
    assert ssh_ok(lab20, "cmp2", "cat /usr/sbin/policy-rc.d").encode() == machine_gate
    # The machine itself is untouched.
    assert Path("/usr/sbin/policy-rc.d").read_bytes() == machine_gate
    assert sorted(p.name for p in Path("/etc").glob("policy-rc.d/*")) == machine_policies
    assert not Path("/var/lib/policy-rc.d/lab-test.deferred").exists()


def test_invoke_rc_d_restarts_lab_api_inside_its_host_and_haproxy_sees_it_up(lab20: Lab) -> None:
    lab20.write_host_file("ctl1", "/usr/sbin/policy-rc.d", ALLOW_ALL, 0o755)
    before = int(ssh_ok(lab20, "ctl1", "cat /run/lab-api.pid"))
    other_before = int(ssh_ok(lab20, "ctl2", "cat /run/lab-api.pid"))

    out = ssh_ok(lab20, "ctl1", "invoke-rc.d lab-api restart && cat /run/lab-api.pid")

    after = int(out.split()[-1])
    assert after != before
    # Without a PID namespace, pids inside the host are the machine's pids.
    assert "/usr/sbin/lab-api" in " ".join(Path(f"/proc/{after}/cmdline").read_text().split("\0"))
    assert lab20.processes()[after] == "ctl1"
    assert (
        not Path(f"/proc/{before}").exists()
        or "lab-api" not in Path(f"/proc/{before}/cmdline").read_text()
    )
    assert int(ssh_ok(lab20, "ctl2", "cat /run/lab-api.pid")) == other_before
    states = wait_all_up(lab20, "lb1", {"ctl1", "ctl2"})
    assert states == {"ctl1": "UP", "ctl2": "UP"}
    address = lab20.state().host("ctl1").address
    reply = json.loads(ssh_ok(lab20, "ctl1", f"curl -sf http://{address}:8080/x"))
    assert reply == {"host": "ctl1", "pid": after}


def test_the_machines_docker_gate_denies_restarts_inside_a_host(lab20: Lab) -> None:
    before = ssh_ok(lab20, "ctl2", "cat /run/lab-api.pid")

    out = ssh(lab20, "ctl2", "invoke-rc.d lab-api restart")

    assert "policy-rc.d denied execution of restart" in out.stderr
    assert ssh_ok(lab20, "ctl2", "cat /run/lab-api.pid") == before


def test_cron_restarts_through_invoke_rc_d_on_a_compute(lab20: Lab) -> None:
    lab20.write_host_file("cmp3", "/usr/sbin/policy-rc.d", ALLOW_ALL, 0o755)
    before = ssh_ok(lab20, "cmp3", "cat /run/crond.pid").strip()

    ssh_ok(lab20, "cmp3", "invoke-rc.d cron restart")

    after = ssh_ok(lab20, "cmp3", "cat /run/crond.pid").strip()
    assert after != before
    assert lab20.processes()[int(after)] == "cmp3"


def test_lab_api_init_script_actions(lab20: Lab) -> None:
    init = "/etc/init.d/lab-api"
    assert lab20.exec("ctl2", [init, "status"]).returncode == 0
    stopped = lab20.exec("ctl2", [init, "stop"], check=True)
    assert b"Stopped lab-api" in stopped.stdout
    try:
        assert lab20.exec("ctl2", [init, "status"]).returncode == 3
        assert b"not running" in lab20.exec("ctl2", [init, "try-restart"], check=True).stdout
        assert lab20.exec("ctl2", [init, "status"]).returncode == 3
    finally:
        lab20.exec("ctl2", [init, "start"], check=True)
    assert lab20.exec("ctl2", [init, "status"]).returncode == 0
    assert wait_all_up(lab20, "lb1", {"ctl1", "ctl2"}) == {"ctl1": "UP", "ctl2": "UP"}


def test_exec_runs_inside_the_host_and_files_land_in_its_overlay(lab20: Lab) -> None:
    assert lab20.exec("cmp5", ["hostname"], check=True).stdout == b"cmp5\n"
    lab20.write_host_file("cmp5", "/etc/lab-test/nested/file", b"one\n", 0o600)

    assert lab20.read_host_file("cmp5", "/etc/lab-test/nested/file") == b"one\n"
    mode = lab20.exec("cmp5", ["stat", "-c", "%a", "/etc/lab-test/nested/file"], check=True)
    assert mode.stdout == b"600\n"
    assert not Path("/etc/lab-test").exists()
    with pytest.raises(LabError, match="exited 1"):
        lab20.read_host_file("cmp6", "/etc/lab-test/nested/file")
    with pytest.raises(LabError, match="must be absolute"):
        lab20.write_host_file("cmp5", "relative", b"")


def test_status_sees_every_host_healthy(lab20: Lab) -> None:
    status = lab20.status()

    assert status.healthy
    assert all(h.running and h.sshd and h.sshd.startswith("OpenSSH") for h in status.hosts)
    by_name = {h.name: h for h in status.hosts}
    assert by_name["ctl1"].api_healthy is True and by_name["cmp1"].api_healthy is None
    assert {s.name: s.status for s in by_name["lb1"].servers or ()} == {
        "ctl1": "UP",
        "ctl2": "UP",
    }


def test_cli_status_json_and_refusal_of_a_second_up(
    lab20: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="interlock")
    lab_cli.register(parser.add_subparsers(dest="command", required=True))
    state = lab20.state()
    args = parser.parse_args(
        ["lab", "status", "--dir", str(lab20.directory), "--name", state.spec.name, "--json"]
    )

    assert args.handler(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["healthy"] is True
    assert [h["name"] for h in document["hosts"]] == [h.name for h in state.hosts]
    table = lab_cli.render_status(lab20.status()).splitlines()
    assert table[0].split()[:7] == ["HOST", "ROLE", "ADDRESS", "PID", "PROCS", "SSHD", "API"]
    assert table[1].split()[-2:] == ["ctl1=UP", "ctl2=UP"]
    assert table[-1].endswith("(up): healthy")
    summary = lab_cli.render_up(lab20, UpReport(state, 1.25, {}))
    assert summary.startswith(f"lab up in 1.2 s: 20 hosts on bridge {state.spec.bridge}")
    assert "controllers ctl1-ctl2" in summary and "computes    cmp1-cmp17" in summary
    assert f"-i {lab20.client_key} root@{state.hosts[0].address}" in summary

    same_directory = Lab(lab20.directory, name=state.spec.name, subnet=state.spec.subnet)
    with pytest.raises(LabError, match="already running"):
        same_directory.up(hosts=2, controllers=1, lbs=0)
    same_subnet = Lab(lab20.directory / "other", name="tother", subnet=state.spec.subnet)
    with pytest.raises(LabError, match="overlaps"):
        same_subnet.up(hosts=2, controllers=1, lbs=0)
    assert lab20.status().healthy  # the refusals left the running lab alone
