""" "restarted" means a new instance that stays up, for Debian's own daemons on sysv.

Each daemon here is not named like its service or its pidfile: openssh-server's `ssh` runs
`sshd`, haproxy runs a master and a worker (`-W`), memcached's init script and its daemon
disagree on the pidfile, rabbitmq-server's script starts `beam.smp` and names its pidfile
`PID_FILE`. They run from the machine's own packages inside one private mount, PID and network
namespace (host_namespace.py): the real init scripts start them, the real invoke-rc.d asks the
gate (which defers and records the restart), then `interlock restart --deferred-only` must
restart each for real. Every daemon dies with the namespace at teardown, even after a failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host.gate_env import INTERLOCK, GateEnv, charm_policy, make_gate_env
from host.host_namespace import Namespace

pytestmark = [pytest.mark.root, pytest.mark.slow]

# haproxy in master-worker mode, on loopback inside the namespace's own network.
HAPROXY_CFG = """\
global
    stats socket /run/haproxy-test.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:18080
    default_backend be
backend be
    server s1 127.0.0.1:18081
"""

# (service, the daemon's command name as the kernel shows it)
DAEMONS = [
    ("ssh", "sshd"),
    ("haproxy", "haproxy"),
    ("memcached", "memcached"),
    ("rabbitmq-server", "beam.smp"),
]


@pytest.fixture(scope="module")
def sandbox(machine_dirs: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    base = tmp_path_factory.mktemp("daemons")
    gate = make_gate_env(base / "gate")
    (base / "haproxy.cfg").write_text(HAPROXY_CFG)
    (base / "haproxy.default").write_text(f'CONFIG="{base / "haproxy.cfg"}"\nEXTRAOPTS="-W"\n')
    ns = Namespace(gate, base / "ns")
    ns.binds[base / "haproxy.default"] = "/etc/default/haproxy"
    with ns:
        yield ns


def daemon_pids(ns: Namespace, comm: str) -> set[int]:
    result = ns.run(["pgrep", "-x", comm])
    return {int(word) for word in result.stdout.split()}


def wait_running(ns: Namespace, comm: str, timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (pids := daemon_pids(ns, comm)):
        assert time.monotonic() < deadline, f"no {comm} process after {timeout}s"
        time.sleep(0.1)
    return pids


def defer_restart(ns: Namespace, gate: GateEnv, service: str) -> None:
    """A package's restart, refused by the gate and recorded in the ledger (alone: what an
    earlier test left there is dropped first)."""
    for path in gate.event_files():
        path.unlink()
    policy = gate.write_policy("charm-ops.policy", charm_policy("ops", {service: ["restart"]}))
    try:
        result = ns.run(["invoke-rc.d", service, "restart"], check=True)
    finally:
        policy.unlink()
    assert "policy-rc.d denied execution of restart" in result.stdout + result.stderr
    assert [event.service for event in gate.events()] == [service]


def restart_deferred(ns: Namespace, *options: str) -> tuple[int, dict[str, Any], float]:
    root = str(ns.gate_env.root)
    argv = [str(INTERLOCK), "--root", root, "restart", "--deferred-only", "--json", *options]
    started = time.monotonic()
    result = ns.run(argv, timeout=300)
    elapsed = time.monotonic() - started
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return result.returncode, report, elapsed


@pytest.mark.parametrize(("service", "comm"), DAEMONS, ids=[s for s, _ in DAEMONS])
def test_restart_is_a_new_running_instance(sandbox: Namespace, service: str, comm: str) -> None:
    if not Path("/etc/init.d", service).exists():
        pytest.skip(f"{service} is not installed (scripts/bootstrap installs it)")
    sandbox.run([f"/etc/init.d/{service}", "start"], check=True, timeout=120)
    before = wait_running(sandbox, comm)
    defer_restart(sandbox, sandbox.gate_env, service)
    code, report, elapsed = restart_deferred(sandbox)
    after = daemon_pids(sandbox, comm)
    print(f"{service}: restart --deferred-only took {elapsed:.1f}s (settle 2s)")
    assert after, f"no {comm} runs after the restart: {report}"
    assert not before & after, f"old {comm} processes still run: {before & after}"
    assert code == 0, report
    assert sandbox.gate_env.events() == []
    [outcome] = report["outcomes"]
    assert outcome["status"] == "restarted", outcome
    assert outcome["pid_before"] in before
    assert outcome["pid_after"] in after


def test_memcached_whose_init_script_lost_its_daemon(sandbox: Namespace) -> None:
    """The daemon's pidfile (/etc/memcached.conf: -P /run/memcached/memcached.pid) names it, the
    init script's (/run/memcached.pid) is gone: the script's restart cannot stop it, and the
    new daemon it starts cannot bind the port and exits. That is not a restart."""
    ns = sandbox
    ns.run(["install", "-d", "-o", "memcache", "-g", "memcache", "/run/memcached"], check=True)
    ns.run(["/etc/init.d/memcached", "restart"], check=True)
    [old] = wait_running(ns, "memcached")
    deadline = time.monotonic() + 10
    while ns.pid_of("/run/memcached/memcached.pid") != old:
        assert time.monotonic() < deadline, "memcached wrote no pidfile of its own"
        time.sleep(0.1)
    ns.run(["rm", "-f", "/run/memcached.pid"], check=True)
    defer_restart(ns, ns.gate_env, "memcached")
    code, report, _ = restart_deferred(ns, "--timeout", "5")
    assert daemon_pids(ns, "memcached") == {old}  # the old daemon kept running, alone
    assert code == 1, report
    [outcome] = report["outcomes"]
    assert outcome["status"] == "failed", outcome
    assert f"still the same instance, pid {old}" in str(outcome["detail"])
    assert [event.service for event in ns.gate_env.events()] == ["memcached"]
