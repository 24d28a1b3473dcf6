"""Restarts of a real sysv service: deferred ones through interlock or from the ledger, named ones.

The service is the lab's HTTP API under the lab's own init script, installed in a private mount
namespace (a temporary directory bind-mounted over /etc/init.d), so `service` and interlock's
sysv manager find it where they look on a real host, and this machine's /etc is untouched.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

import interlock
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.rollout.journal import Journal
from rollout.rollout_processes import CLI, LAB_API, Processes, free_port

INIT_SCRIPT = Path(interlock.__file__).parent / "lab" / "files" / "lab-api.init"
SERVICE = "rollapi"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare"),
]


class Host:
    """One host's view: /etc/init.d with our service, a ledger under a root, an inventory."""

    def __init__(self, directory: Path, processes: Processes) -> None:
        self.directory = directory
        self.processes = processes
        self.port = free_port()
        self.init_dir = directory / "init.d"
        self.init_dir.mkdir()
        daemon = directory / SERVICE
        shutil.copy(LAB_API, daemon)
        daemon.chmod(0o755)
        self.pidfile = directory / f"{SERVICE}.pid"
        text = INIT_SCRIPT.read_text()
        for key, value in (
            ("NAME", SERVICE),
            ("DAEMON", str(daemon)),
            ("PIDFILE", str(self.pidfile)),
            ("CONFIG", str(directory / f"{SERVICE}.conf")),
        ):
            text = "\n".join(
                f"{key}={value}" if line.startswith(f"{key}=") else line
                for line in text.splitlines()
            )
        (self.init_dir / SERVICE).write_text(text + "\n")
        (self.init_dir / SERVICE).chmod(0o755)
        (directory / f"{SERVICE}.conf").write_text(f"BIND=127.0.0.1:{self.port}\n")
        self.root = directory / "root"
        self.ledger_dir = self.root / "var" / "lib" / "policy-rc.d"
        self.ledger_dir.mkdir(parents=True)
        self.inventory = directory / "inventory.yaml"
        self.inventory.write_text("hosts:\n  one: {address: 127.0.0.1}\n")
        self.journal = directory / "journal.sqlite"
        processes.pidfiles.append(self.pidfile)

    def in_namespace(self, *argv: str, log: str) -> int:
        """Run argv with our init.d over /etc/init.d, in a mount namespace of its own."""
        process = self.processes.start(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$1" /etc/init.d && shift && exec "$@"',
                "sh",
                str(self.init_dir),
                *argv,
            ],
            log,
        )
        return process.wait(timeout=120)

    def service(self, action: str) -> None:
        assert self.in_namespace(f"/etc/init.d/{SERVICE}", action, log="service.log") == 0

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def defer(self) -> None:
        Ledger(str(self.ledger_dir)).record(
            DeferredEvent(SERVICE, "restart", "Package update", int(time.time()), "test", "charm")
        )

    def defer_again_after_restart(self) -> None:
        """Once the next restart is done, the same deferral is requested anew (a second later,
        as event timestamps are whole seconds), before anyone has cleared the first."""
        again = self.directory / "defer-again"
        again.write_text(
            f"#!{sys.executable}\n"
            "import time\n"
            "from interlock.host.ledger import DeferredEvent, Ledger\n"
            "time.sleep(1.1)\n"
            f"Ledger({str(self.ledger_dir)!r}).record(\n"
            f"    DeferredEvent({SERVICE!r}, 'restart', 'Package update', int(time.time()),"
            " 'test', 'charm')\n"
            ")\n"
        )
        again.chmod(0o755)
        with (self.directory / f"{SERVICE}.conf").open("a") as config:
            # The init script sources its config with its own arguments in $1.
            config.write(f'[ "$1" = restart ] && trap {again} EXIT\n')

    def rollout(self, *args: str, log: str) -> int:
        return self.in_namespace(
            *CLI,
            "rollout",
            *args,
            "-i",
            str(self.inventory),
            "--journal",
            str(self.journal),
            "--yes",
            "--no-progress",
            log=log,
        )

    def spec(self, action: str) -> Path:
        path = self.directory / "spec.yaml"
        interlock_argv = [sys.executable, "-m", "interlock.cli.main", "--root", str(self.root)]
        path.write_text(
            "transport: local\n"
            f"ledger_dir: {self.ledger_dir}\n"
            f"interlock: {interlock_argv!r}\n"
            f"action: {action}\n"
            "post_gates:\n"
            f"  probes: [{{http: 'http://127.0.0.1:{self.port}/health'}}]\n"
            "  passes: 2\n"
            "  interval: 100ms\n"
        )
        return path


@pytest.fixture
def host(tmp_path: Path, processes: Processes) -> Host:
    made = Host(tmp_path, processes)
    made.service("start")
    return made


def steps_of(host: Host) -> dict[str, str]:
    with Journal(host.journal) as journal:
        run = journal.latest_run()
        assert run.state == "complete", run.reason
        record = journal.hosts(run.id)[0]
        return {
            name: f"{step.state}: {step.detail}"
            for name, step in journal.steps(run.id, record.batch, record.host).items()
        } | {"host": f"{record.state}: {record.detail}"}


@pytest.mark.parametrize("via", ["interlock", "ledger"])
def test_deferred_restarts_are_applied_verified_and_cleared(host: Host, via: str) -> None:
    host.defer()
    before = host.pid()
    spec = host.spec(f"{{deferred: {via}}}")
    assert host.rollout("run", "--spec", str(spec), log="run1.log") == 0, (
        host.directory / "run1.log"
    ).read_text()
    steps = steps_of(host)
    assert host.pid() != before
    assert steps["restarted"] == f"done: {SERVICE} pid {before} → {host.pid()}"
    assert steps["deferred"] == f"done: restarted {SERVICE}"
    assert steps["health"].startswith("done: passed 2")
    assert Ledger(str(host.ledger_dir)).read().events == []
    # Nothing is owed any more: a second run asks the ledger and touches nothing.
    after = host.pid()
    assert host.rollout("run", "--spec", str(spec), log="run2.log") == 0
    assert steps_of(host) == {"host": "done: nothing to do"}
    assert host.pid() == after


@pytest.mark.parametrize("via", ["interlock", "ledger"])
def test_a_deferral_requested_again_after_the_restart_survives(host: Host, via: str) -> None:
    """Removal goes through the ledger's lock and re-check: a newer request is never cleared."""
    host.defer()
    [first] = Ledger(str(host.ledger_dir)).read().events
    host.defer_again_after_restart()
    spec = host.spec(f"{{deferred: {via}}}")
    assert host.rollout("run", "--spec", str(spec), log="run.log") == 0, (
        host.directory / "run.log"
    ).read_text()
    [kept] = Ledger(str(host.ledger_dir)).read().events
    assert kept.service == SERVICE
    assert kept.timestamp > first.timestamp


def test_named_restart_is_checked_against_the_snapshot(host: Host) -> None:
    before = host.pid()
    spec = host.spec(f"{{restart: [{SERVICE}]}}")
    assert host.rollout("run", "--spec", str(spec), log="run1.log") == 0, (
        host.directory / "run1.log"
    ).read_text()
    steps = steps_of(host)
    assert steps["snapshot"] == f"done: {SERVICE} pid {before}"
    assert steps["restart"] == f"done: restarted {SERVICE}"
    assert steps["restarted"] == f"done: {SERVICE} pid {before} → {host.pid()}"
    # The same restart again is work already done; --again does it.
    after = host.pid()
    assert host.rollout("run", "--spec", str(spec), log="run2.log") == 0
    assert steps_of(host)["host"].startswith("done: already done in run")
    assert host.pid() == after
    assert host.rollout("run", "--spec", str(spec), "--again", log="run3.log") == 0
    assert host.pid() != after


def test_a_service_that_does_not_come_back_fails_the_host(host: Host) -> None:
    # The new config binds an address this machine does not have (TEST-NET-1): start fails.
    (host.directory / f"{SERVICE}.conf").write_text("BIND=192.0.2.1:8080\n")
    spec = host.spec(f"{{restart: [{SERVICE}]}}")
    code = host.rollout("run", "--spec", str(spec), log="run.log")
    assert code == 3, (host.directory / "run.log").read_text()
    with Journal(host.journal) as journal:
        run = journal.latest_run()
        assert run.state == "paused"
        assert run.reason is not None and "over the failure budget of 0" in run.reason
        record = journal.hosts(run.id)[0]
        assert record.state == "failed"
        assert record.detail is not None and record.detail.startswith("restart: exit 1")


def test_an_event_already_satisfied_is_cleared_not_restarted_again(host: Host) -> None:
    host.defer()
    time.sleep(1.1)  # event timestamps are whole seconds: a start must come a second later
    host.service("restart")  # restarted since the event, by someone else (or a killed try)
    after = host.pid()
    spec = host.spec("{deferred: interlock}")
    assert host.rollout("run", "--spec", str(spec), log="run.log") == 0, (
        host.directory / "run.log"
    ).read_text()
    assert steps_of(host) == {
        "host": f"done: nothing to do (paid meanwhile: {SERVICE} restarted since its event)"
    }
    assert host.pid() == after
    assert Ledger(str(host.ledger_dir)).read().events == []
