"""`interlock fleet install` and `interlock fleet status` on a 20-host lab, through real sshd.

Hosts have roles in this module: lb1 and cmp12-cmp14 stay clean; ctl1-ctl2 and cmp1-cmp8 get
events from interlock's own gate (real invoke-rc.d); cmp9-cmp11 lose interlock again and get
files a charm wrote; cmp15 restarts, cmp16 gets a malformed file and cmp17 crashes. Each test
reads only the hosts whose state it knows, so the tests do not depend on their order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from fleet.lab_fleet import (
    CHARM_BLOCK,
    CHARM_BLOCK_QUOTED,
    CHARM_FLOW_FOLDED,
    CHARM_FLOW_ONE_LINE,
    CHARM_FLOW_TWO_LINES,
    Row,
    events_of,
    fleet_status,
    interlock,
    inventory_copy,
    on_hosts,
    package_snapshot,
    rows,
    ssh,
    ssh_ok,
    table_rows,
)
from fleet.loopback_sshd import free_port
from interlock.facts import ledger as ledger_fact
from interlock.facts.sections import new_marker
from interlock.fleet.inventory_file import load_inventory
from interlock.fleet.transport import HostKeyMismatch, SshTransport, fan_out
from interlock.host.ledger import PACKAGE_UPDATE
from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab

pytestmark = pytest.mark.lab

MACHINE_GATE = Path("/usr/sbin/policy-rc.d")
LEDGER = "/var/lib/policy-rc.d"
GATED_COMPUTES = [f"cmp{n}" for n in range(1, 9)]
CONTROLLERS = ["ctl1", "ctl2"]
CHARM_HOSTS = ["cmp9", "cmp10", "cmp11"]
RESTARTED, MALFORMED, CRASHED = "cmp15", "cmp16", "cmp17"
# Every host but the one that crashes; the scenario's hosts only.
FLEET = f"all:!{CRASHED}"
SCENARIO = f"all:!{RESTARTED}:!{MALFORMED}:!{CRASHED}"
GATE = "interlock:interlock"
CHARM = "charm:neutron-gateway"
DENIED = "invoke-rc.d: policy-rc.d denied execution of restart."
# What each charm host holds: file name -> content.
CHARM_FILES = {
    "cmp9": {
        "charm-neutron-gateway-5e9d0c14-a422-11eb-a3e0-fa163e25ff5d.deferred": CHARM_BLOCK,
        "charm-neutron-gateway-0b3e9c2a-a429-11eb-a3e0-fa163e25ff5d.deferred": (CHARM_BLOCK_QUOTED),
    },
    "cmp10": {
        "charm-neutron-gateway-2f41d7c6-a422-11eb-a3e0-fa163e25ff5d.deferred": CHARM_FLOW_ONE_LINE
    },
    "cmp11": {
        "charm-neutron-gateway-8a1c5f2e-a422-11eb-a3e0-fa163e25ff5d.deferred": CHARM_FLOW_TWO_LINES,
        "charm-neutron-gateway-0b3e7a90-a429-11eb-a3e0-fa163e25ff5d.deferred": CHARM_FLOW_FOLDED,
    },
}


@dataclass(frozen=True)
class Install:
    stdout: str
    returncode: int
    stderr: str
    machine_gate: bytes
    package: Path  # what was installed


@dataclass(frozen=True)
class Scenario:
    expected: set[Row]
    denials: dict[str, str]  # host -> what invoke-rc.d said


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """20 hosts (lb1, ctl1-ctl2, cmp1-cmp17), each in its own PID namespace so one can crash."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")
    directory = tmp_path_factory.mktemp("fleet-lab")
    with running_lab(directory, hosts=20, controllers=2, lbs=1, pid_namespace=True) as lab:
        before = processes.snapshot(lab.processes())
        yield lab
        before |= processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"


@pytest.fixture(scope="module")
def names(lab: Lab) -> list[str]:
    return [host.name for host in lab.state().hosts]


@pytest.fixture(scope="module")
def installed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """`interlock fleet install --no-chain` on every host (chaining to Docker's `exit 101`
    would refuse everything); each host's /usr/sbin is its own overlay."""
    machine_gate = MACHINE_GATE.read_bytes()
    package = package_snapshot(tmp_path_factory.mktemp("package"))
    inventory = str(lab.inventory_path)
    result = interlock("fleet", "install", "-i", inventory, "--no-chain", package=package)
    return Install(result.stdout, result.returncode, result.stderr, machine_gate, package)


@pytest.fixture(scope="module")
def scenario(lab: Lab, installed: Install) -> Scenario:
    """Events from the real gate on ctl1-2 and cmp1-8; charm files on cmp9-11 without interlock."""
    assert installed.returncode == 0, installed.stderr
    crons = on_hosts(GATED_COMPUTES, lambda h: ssh_ok(lab, h, "cat /run/crond.pid"))

    def deny(host: str) -> str:
        service = "lab-api" if host in CONTROLLERS else "cron"
        result = ssh(lab, host, f"interlock auto-restarts off && invoke-rc.d {service} restart")
        assert result.returncode == 0, f"{host}: {result.stderr}"
        return result.stderr

    denials = on_hosts(CONTROLLERS + GATED_COMPUTES, deny)
    # Denied means not done: cron still runs as the same process.
    assert on_hosts(GATED_COMPUTES, lambda h: ssh_ok(lab, h, "cat /run/crond.pid")) == crons

    def charm_host(host: str) -> None:
        ssh_ok(lab, host, "interlock gate uninstall && rm /usr/sbin/interlock")
        for name, text in CHARM_FILES[host].items():
            lab.write_host_file(host, f"{LEDGER}/{name}", text)

    on_hosts(CHARM_HOSTS, charm_host)
    gates = on_hosts(CHARM_HOSTS, lambda h: ssh_ok(lab, h, "cat /usr/sbin/policy-rc.d"))
    assert set(gates.values()) == {installed.machine_gate.decode()}

    expected = {(h, "cron", "restart", PACKAGE_UPDATE, GATE) for h in GATED_COMPUTES}
    expected |= {(h, "lab-api", "restart", PACKAGE_UPDATE, GATE) for h in CONTROLLERS}
    expected |= {(h, "openvswitch-switch", "restart", PACKAGE_UPDATE, CHARM) for h in CHARM_HOSTS}
    changed = "File(s) changed: /etc/neutron/neutron.conf"
    expected.add(("cmp9", "neutron-l3-agent", "restart", changed, CHARM))
    changed = "File(s) changed: /etc/neutron/dhcp_agent.ini, /etc/neutron/neutron.conf"
    expected.add(("cmp11", "neutron-dhcp-agent", "restart", changed, CHARM))
    return Scenario(expected, denials)


def test_install_puts_interlock_and_an_active_gate_on_every_host(
    lab: Lab, names: list[str], installed: Install
) -> None:
    assert installed.returncode == 0, installed.stderr
    assert set(installed.stdout.splitlines()) == {
        *(f"ok   {host}: interlock installed, gate active" for host in names),
        "20 of 20 hosts ready",
    }
    probe = "interlock gate status && stat -c %i:%Y:%s /usr/sbin/interlock"
    first = on_hosts(names, lambda h: ssh(lab, h, probe))
    for host, result in first.items():
        assert result.returncode == 0, f"{host}: {result.stdout} {result.stderr}"
        assert "interlock gate: active" in result.stdout

    again = interlock(
        "fleet", "install", "-i", str(lab.inventory_path), "--no-chain", package=installed.package
    )

    assert again.returncode == 0, again.stderr
    assert set(again.stdout.splitlines()) == {
        *(f"ok   {host}: interlock already current, gate active" for host in names),
        "20 of 20 hosts ready",
    }
    # Same inode, mtime and size: the zipapp was not written again.
    second = on_hosts(names, lambda h: ssh(lab, h, probe))
    assert {h: r.stdout for h, r in second.items()} == {h: r.stdout for h, r in first.items()}
    assert MACHINE_GATE.read_bytes() == installed.machine_gate


def test_status_shows_gate_and_charm_events_with_totals(lab: Lab, scenario: Scenario) -> None:
    for host, said in scenario.denials.items():
        assert DENIED in said, f"{host}: {said}"

    code, document = fleet_status(lab.inventory_path, SCENARIO)

    assert code == 0
    assert rows(document) == scenario.expected
    assert len(document["hosts"]) == 17
    assert document["unreachable"] == []
    for host in document["hosts"]:
        assert host["problems"] == []
        assert host["hostname"] == host["host"]
        for event in host["restarts"]:
            assert (event["restarted_since"], event["state"]) == (False, "pending")
    assert {e["file"] for e in events_of(document, "cmp9")} == {
        f"{LEDGER}/{name}" for name in CHARM_FILES["cmp9"]
    }
    assert document["totals"] == {
        "per_service": {
            "cron": 8,
            "lab-api": 2,
            "neutron-dhcp-agent": 1,
            "neutron-l3-agent": 1,
            "openvswitch-switch": 3,
        },
        "per_group": {"computes": 11, "controllers": 2},
        "hosts_with_pending": 13,
        "hosts_needing_reboot": 0,
    }

    table = interlock("fleet", "status", "-i", str(lab.inventory_path), "--limit", SCENARIO)

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    (cmp10,) = (row for row in table_rows(table.stdout) if row[0] == "cmp10")
    assert cmp10[:3] + cmp10[4:] == [
        "cmp10",
        "openvswitch-switch",
        "restart",
        "pending",
        PACKAGE_UPDATE,
    ]
    assert cmp10[3].endswith("d")  # an age in days: the charm wrote it in 2021
    assert len(table_rows(table.stdout)) == len(scenario.expected)
    assert (
        "pending per service: cron 8, lab-api 2, neutron-dhcp-agent 1, neutron-l3-agent 1, "
        "openvswitch-switch 3" in lines
    )
    assert "hosts per group: computes 11, controllers 2" in lines
    assert lines[-1].startswith("17 hosts read in ")
    assert lines[-1].endswith(": 13 with deferred work")


def test_a_service_restarted_since_its_event_shows_so_and_check_clears_it(
    lab: Lab, installed: Install
) -> None:
    assert installed.returncode == 0, installed.stderr
    said = ssh(lab, RESTARTED, "interlock auto-restarts off && invoke-rc.d cron restart").stderr
    assert DENIED in said
    _, document = fleet_status(lab.inventory_path, RESTARTED)
    (event,) = events_of(document, RESTARTED)
    assert (event["service"], event["state"]) == ("cron", "pending")

    # Event times are whole seconds: a start counts as later from the next second on.
    time.sleep(max(0.0, event["timestamp"] + 1.5 - time.time()))
    ssh_ok(lab, RESTARTED, "/etc/init.d/cron restart")
    code, document = fleet_status(lab.inventory_path, RESTARTED)

    assert code == 0
    (event,) = events_of(document, RESTARTED)
    assert (event["restarted_since"], event["state"]) == (True, "restarted since")
    assert document["totals"]["per_service"] == {}
    assert document["totals"]["hosts_with_pending"] == 0
    table = interlock("fleet", "status", "-i", str(lab.inventory_path), "--limit", RESTARTED)
    assert [row[:3] + row[4:5] for row in table_rows(table.stdout)] == [
        [RESTARTED, "cron", "restart", "restarted since"]
    ]

    check = ssh(lab, RESTARTED, "interlock check")

    assert check.returncode == 0, check.stderr
    assert "1 cleared, 0 still pending" in check.stdout
    _, document = fleet_status(lab.inventory_path, RESTARTED)
    assert events_of(document, RESTARTED) == []


def test_a_malformed_event_file_is_a_problem_naming_host_and_file(
    lab: Lab, names: list[str], scenario: Scenario
) -> None:
    good = f"{LEDGER}/charm-neutron-gateway-1c7e2d40-a41f-11eb-a3e0-fa163e25ff5d.deferred"
    broken = f"{LEDGER}/charm-neutron-gateway-9d2e0f31-a41f-11eb-a3e0-fa163e25ff5d.deferred"
    lab.write_host_file(MALFORMED, good, CHARM_BLOCK)
    lab.write_host_file(MALFORMED, broken, CHARM_FLOW_TWO_LINES.replace("}", ""))

    code, document = fleet_status(lab.inventory_path, FLEET)

    assert code == 1
    assert {h["host"] for h in document["hosts"]} == set(names) - {CRASHED}
    problems = {h["host"]: h["problems"] for h in document["hosts"] if h["problems"]}
    assert list(problems) == [MALFORMED]
    (problem,) = problems[MALFORMED]
    assert problem.startswith(f"{MALFORMED}:{broken} line ")
    assert [e["file"] for e in events_of(document, MALFORMED)] == [good]
    assert scenario.expected <= rows(document)

    table = interlock("fleet", "status", "-i", str(lab.inventory_path), "--limit", FLEET)

    assert table.returncode == 1
    assert f"interlock: {problem}" in table.stderr.splitlines()
    assert [row[:2] for row in table_rows(table.stdout) if row[0] == MALFORMED] == [
        [MALFORMED, "openvswitch-switch"]
    ]


def test_an_unreachable_host_is_listed_with_its_reason_and_the_rest_reported(
    lab: Lab, names: list[str], tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    ghost = {"address": "127.0.0.1", "port": port, "groups": ["computes"]}
    inventory = inventory_copy(lab, tmp_path / "inventory.yaml", extra_hosts={"ghost": ghost})

    code, document = fleet_status(inventory, f"{FLEET}:!{MALFORMED}")

    assert code == 1
    assert document["unreachable"] == [
        {"host": "ghost", "reason": f"127.0.0.1 port {port}: connection refused (after 3 attempts)"}
    ]
    assert {h["host"] for h in document["hosts"]} == set(names) - {CRASHED, MALFORMED}
    table = interlock("fleet", "status", "-i", str(inventory), "--limit", "ghost:lb1")
    assert table.returncode == 1
    assert f"interlock: ghost: unreachable: 127.0.0.1 port {port}: connection refused" in (
        table.stderr
    )
    assert table.stdout.splitlines()[-1].endswith(": 0 with deferred work, 1 unreachable")


def test_a_host_key_mismatch_refuses_every_host_and_runs_nothing(
    lab: Lab, names: list[str], scenario: Scenario, tmp_path: Path
) -> None:
    pattern = lab.known_hosts.read_text().split()[0]
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{pattern} {stranger}")
    inventory = inventory_copy(lab, tmp_path / "inventory.yaml", known_hosts=known_hosts)
    reachable = [name for name in names if name != CRASHED]

    code, document = fleet_status(inventory, FLEET)

    assert code == 1
    assert document["hosts"] == []
    assert [u["host"] for u in document["unreachable"]] == reachable
    for entry in document["unreachable"]:
        assert " presented host key SHA256:" in entry["reason"]
        assert f"but {known_hosts} has SHA256:" in entry["reason"]
        assert "refusing to connect" in entry["reason"]

    install = interlock(
        "fleet", "install", "-i", str(inventory), "--no-chain", "--limit", ":".join(CHARM_HOSTS)
    )
    assert install.returncode == 1
    assert install.stdout.splitlines() == ["0 of 3 hosts ready"]
    assert len([line for line in install.stderr.splitlines() if "presented host key" in line]) == 3
    marker = "/root/host-key-test-marker"

    async def touch_everywhere() -> list[Exception | None]:
        hosts = load_inventory(inventory).select(FLEET)
        async with SshTransport(known_hosts=str(known_hosts)) as transport:
            outcomes = await fan_out(hosts, lambda h: transport.run(h, ["touch", marker]), window=8)
        return [outcome.error for outcome in outcomes]

    errors = asyncio.run(touch_everywhere())
    assert all(isinstance(error, HostKeyMismatch) for error in errors), errors
    for host in reachable:
        assert lab.exec(host, ["test", "-e", marker]).returncode == 1, host
    for host in CHARM_HOSTS:
        assert lab.exec(host, ["test", "-e", "/usr/sbin/interlock"]).returncode == 1, host


def test_a_crashed_host_is_listed_unreachable(lab: Lab, names: list[str]) -> None:
    pid = lab.state().host(CRASHED).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # sshd is the host's PID 1: the whole host goes
    deadline = time.monotonic() + 10
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.alive(pid)

    code, document = fleet_status(lab.inventory_path, f"all:!{MALFORMED}")

    assert code == 1
    address = lab.state().host(CRASHED).address
    assert document["unreachable"] == [
        {"host": CRASHED, "reason": f"{address} port 22: connection refused (after 3 attempts)"}
    ]
    assert {h["host"] for h in document["hosts"]} == set(names) - {CRASHED, MALFORMED}


X_DAEMON_SCRIPT = """#!/bin/sh
NAME=x-daemon
DAEMON=/usr/sbin/x-daemon
PIDFILE=/run/x-daemon.pid
"""


def test_the_ledger_read_knows_a_sysv_daemon_through_a_symlink_and_after_its_binary_is_replaced(
    lab: Lab,
) -> None:
    """The service state read over SSH on a clean host (cmp14), in a ledger directory of its
    own: the DAEMON path is a symlink and the process is started by its real path (its name
    then differs from DAEMON's), so only the executable can say it is the service; replacing
    the binary under it leaves the process running a deleted file, which is still the service;
    a pidfile naming another program is not."""
    host = "cmp14"
    ledger_dir = "/var/lib/x-test/ledger"
    ssh_ok(
        lab,
        host,
        "mkdir -p /var/lib/x-test/ledger && cp /bin/sleep /var/lib/x-test/real-bin && "
        "ln -sf /var/lib/x-test/real-bin /usr/sbin/x-daemon && "
        f"printf '%s' '{X_DAEMON_SCRIPT}' > /etc/init.d/x-daemon && "
        "chmod 755 /etc/init.d/x-daemon && "
        "printf 'action: restart\\nreason: test\\nservice: x-daemon\\ntimestamp: 1700000000\\n' "
        f"> {ledger_dir}/x.deferred && "
        "start-stop-daemon --start --background --make-pidfile --pidfile /run/x-daemon.pid "
        "--exec /var/lib/x-test/real-bin -- 3600",
    )
    inventory = load_inventory(lab.inventory_path)

    def read() -> tuple[bool, int | None]:
        async def main() -> tuple[bool, int | None]:
            transport = SshTransport.for_inventory(inventory)
            try:
                marker = new_marker()
                result = await transport.run(
                    inventory.hosts[host], ledger_fact.command(marker, ledger_dir), timeout=30
                )
            finally:
                await transport.close()
            result.check()
            fact = ledger_fact.parse(result.stdout.decode("utf-8", "surrogateescape"), marker, host)
            assert not fact.problems, fact.problems
            state = fact.instances["x-daemon"]
            return state.active, state.pid

        return asyncio.run(main())

    try:
        pid = int(ssh_ok(lab, host, "cat /run/x-daemon.pid"))
        assert ssh_ok(lab, host, f"cat /proc/{pid}/comm").strip() == "real-bin"
        assert read() == (True, pid)
        ssh_ok(
            lab,
            host,
            "cp /bin/sleep /var/lib/x-test/new && mv /var/lib/x-test/new /var/lib/x-test/real-bin",
        )
        assert "(deleted)" in ssh_ok(lab, host, f"readlink /proc/{pid}/exe")
        assert read() == (True, pid)
        ssh_ok(lab, host, "kill $(cat /run/x-daemon.pid) && cat /run/sshd.pid > /run/x-daemon.pid")
        assert read() == (False, None)
    finally:
        ssh(
            lab,
            host,
            "start-stop-daemon --stop --quiet --oknodo --exec /var/lib/x-test/real-bin; "
            "rm -rf /var/lib/x-test /usr/sbin/x-daemon /etc/init.d/x-daemon /run/x-daemon.pid",
        )
