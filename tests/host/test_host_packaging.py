"""Real Debian packaging asks our gate: invoke-rc.d, and `apt-get install --reinstall` of real
packages whose maintainer scripts call it, inside a private namespace (see host_namespace.py).

Daemons started here (cron, sshd, nginx) live in the namespace's PID and network namespaces and
die with it at teardown.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
import yaml

from host.gate_env import INTERLOCK, GateEnv, charm_policy
from host.host_namespace import Namespace
from interlock.lab.sandbox import CLEAN_ENV

pytestmark = pytest.mark.root

DENIED = "invoke-rc.d: policy-rc.d denied execution of restart."
CRON_PIDFILE = "/run/crond.pid"
APT_PACKAGES = ("cron", "openssh-server", "nginx", "nginx-light")

StartNamespace = Callable[..., Namespace]


@pytest.fixture(scope="module")
def cached_packages() -> None:
    """The .debs the reinstall tests use, in apt's cache (downloaded only if missing)."""
    result = subprocess.run(
        [
            "apt-get",
            "install",
            "--reinstall",
            "--download-only",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=300",
            *APT_PACKAGES,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=CLEAN_ENV,
        timeout=600,
    )
    assert result.returncode == 0, f"cannot fetch {APT_PACKAGES}: {result.stderr}"


def reinstall(ns: Namespace, *packages: str) -> subprocess.CompletedProcess[str]:
    """apt-get inside the namespace, from the cache only (the namespace has no network)."""
    return ns.run(
        [
            "apt-get",
            "install",
            "--reinstall",
            "--no-download",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=300",
            "-o",
            "Dpkg::Options::=--force-confold",
            *packages,
        ],
        check=True,
        timeout=600,
    )


def interlock(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run([str(INTERLOCK), *args], timeout=120)


def wait_for_next_second(timestamp: int) -> None:
    """A start counts for an event only from the second after the event's timestamp."""
    while time.time() < timestamp + 1.05:
        time.sleep(0.05)


# -- invoke-rc.d --------------------------------------------------------------------------------


def test_invoke_rc_d_without_runlevel_asks_parenthesised(
    namespace: StartNamespace, gate: GateEnv
) -> None:
    gate.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart", "stop"]}))
    ns = namespace(runlevel=None)
    result = ns.run(["invoke-rc.d", "cron", "restart"])
    assert result.returncode == 0
    assert DENIED in result.stderr
    quiet = ns.run(["invoke-rc.d", "--quiet", "cron", "restart"])
    assert quiet.returncode == 0
    assert ns.recorded_argv() == [["cron", "(restart)"], ["--quiet", "cron", "(restart)"]]
    assert [yaml.safe_load(p.read_text())["service"] for p in gate.event_files()] == ["cron"]
    assert ns.pid_of(CRON_PIDFILE) is None  # refused: nothing was started


def test_invoke_rc_d_at_runlevel_2_passes_it_and_records_the_denial(
    namespace: StartNamespace, gate: GateEnv
) -> None:
    gate.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart", "stop"]}))
    ns = namespace(runlevel="2")
    before = int(time.time())
    result = ns.run(["invoke-rc.d", "cron", "restart"])
    assert result.returncode == 0
    assert DENIED in result.stderr
    assert "restart of cron deferred by charm:ops" in result.stderr
    assert ns.recorded_argv() == [["cron", "restart", "2"]]
    [data] = gate.event_dicts()
    timestamp = data.pop("timestamp")
    assert isinstance(timestamp, int) and before <= timestamp <= time.time()
    assert data == {
        "action": "restart",
        "policy_requestor_name": "ops",
        "policy_requestor_type": "charm",
        "reason": "Package update",
        "service": "cron",
    }
    log = gate.log_lines()
    assert len(log) == 1 and "caller=invoke-rc.d argv=['cron', 'restart', '2'] answer=101" in log[0]


def test_allowed_restart_really_restarts_and_check_clears_the_event(
    namespace: StartNamespace, gate: GateEnv
) -> None:
    ns = namespace(runlevel="2")
    ns.run(["invoke-rc.d", "cron", "start"], check=True)
    first = ns.wait_pid(CRON_PIDFILE)

    policy = gate.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart"]}))
    denied = ns.run(["invoke-rc.d", "cron", "restart"], check=True)
    assert DENIED in denied.stderr
    assert ns.pid_of(CRON_PIDFILE) == first
    [event] = gate.events()

    pending = interlock(ns, "check")
    assert pending.returncode == 1, pending.stderr
    assert "0 cleared, 1 still pending" in pending.stdout
    status = interlock(ns, "status")
    assert (status.returncode, status.stdout) == (1, "Services queued for restart: cron\n")

    wait_for_next_second(event.timestamp)
    policy.unlink()  # the operator lifts the block: the next restart is allowed
    allowed = ns.run(["invoke-rc.d", "cron", "restart"], check=True)
    assert "denied" not in allowed.stderr
    second = ns.wait_pid(CRON_PIDFILE, other_than=first)
    assert ns.read(f"/proc/{second}/comm") == "cron\n"
    assert ns.recorded_argv() == [
        ["cron", "start", "2"],
        ["cron", "restart", "2"],
        ["cron", "restart", "2"],
    ]

    cleared = interlock(ns, "check")
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared: cron restart (Package update): it has restarted" in cleared.stdout
    assert gate.event_files() == []
    assert interlock(ns, "status").stdout == "No restarts or hooks deferred\n"


def test_check_keeps_the_event_of_a_service_that_never_ran(
    namespace: StartNamespace, gate: GateEnv
) -> None:
    gate.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart"]}))
    ns = namespace(runlevel="2")
    ns.run(["invoke-rc.d", "cron", "restart"], check=True)
    [event] = gate.events()
    wait_for_next_second(event.timestamp)
    result = interlock(ns, "check", "--json")
    assert result.returncode == 1
    assert '"cleared": []' in result.stdout
    assert len(gate.events()) == 1


# -- apt-get --reinstall ------------------------------------------------------------------------


def test_reinstall_defers_restarts_once_and_restart_deferred_only_applies_them(
    namespace: StartNamespace, gate: GateEnv, cached_packages: None
) -> None:
    ns = namespace(runlevel="2")
    ns.run(["/etc/init.d/cron", "start"], check=True)
    ns.run(["/etc/init.d/ssh", "start"], check=True)
    cron_pid, ssh_pid = ns.wait_pid(CRON_PIDFILE), ns.wait_pid("/run/sshd.pid")

    off = interlock(ns, "auto-restarts", "off")
    assert off.returncode == 0, off.stderr
    assert (gate.policy_dir / "interlock.policy").exists()

    first = reinstall(ns, "cron", "openssh-server")
    assert first.stderr.count(DENIED) + first.stdout.count(DENIED) == 2
    assert ["cron", "restart", "2"] in ns.recorded_argv()
    assert ["ssh", "restart", "2"] in ns.recorded_argv()
    events = gate.events()
    assert sorted((e.service, e.action, e.requestor, e.reason) for e in events) == [
        ("cron", "restart", "interlock:interlock", "Package update"),
        ("ssh", "restart", "interlock:interlock", "Package update"),
    ]
    assert (ns.pid_of(CRON_PIDFILE), ns.pid_of("/run/sshd.pid")) == (cron_pid, ssh_pid)

    reinstall(ns, "cron")  # a second denial of the same restart adds nothing
    assert sorted(str(e.path) for e in gate.events()) == sorted(str(e.path) for e in events)

    status = interlock(ns, "status")
    assert (status.returncode, status.stdout) == (1, "Services queued for restart: cron, ssh\n")

    applied = interlock(ns, "restart", "--deferred-only")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "ok   cron: restarted" in applied.stdout
    assert "ok   ssh: restarted" in applied.stdout
    new_cron, new_ssh = ns.pid_of(CRON_PIDFILE), ns.pid_of("/run/sshd.pid")
    assert new_cron not in (None, cron_pid)
    assert new_ssh not in (None, ssh_pid)
    assert gate.event_files() == []
    after = interlock(ns, "status")
    assert (after.returncode, after.stdout) == (0, "No restarts or hooks deferred\n")


def test_nginx_status_is_allowed_and_its_restart_deferred(
    namespace: StartNamespace, gate: GateEnv, cached_packages: None
) -> None:
    gate.write_policy(
        "charm-web.policy", charm_policy("web", {"nginx": ["restart", "stop", "try-restart"]})
    )
    ns = namespace(runlevel="2")

    # Not running: the maintainer script asks for status (allowed), then starts it (allowed).
    reinstall(ns, "nginx", "nginx-light")
    assert ns.recorded_argv() == [["--quiet", "nginx", "status", "2"], ["nginx", "start", "2"]]
    started = ns.wait_pid("/run/nginx.pid")
    assert gate.events() == []

    # Running: status again, then `upgrade` (nginx's binary swap, a new master process; its
    # postinst falls back to `restart` only if that fails). The restart policy refuses it and
    # the ledger keeps it as a restart.
    ns.clear_argv()
    second = reinstall(ns, "nginx", "nginx-light")
    assert ns.recorded_argv() == [["--quiet", "nginx", "status", "2"], ["nginx", "upgrade", "2"]]
    assert "invoke-rc.d: policy-rc.d denied execution of upgrade." in second.stderr + second.stdout
    assert ns.pid_of("/run/nginx.pid") == started
    [event] = gate.events()
    assert (event.service, event.action, event.requestor) == ("nginx", "restart", "charm:web")

    applied = interlock(ns, "restart", "--deferred-only", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert ns.pid_of("/run/nginx.pid") not in (None, started)
    assert gate.events() == []
