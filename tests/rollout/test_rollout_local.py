"""Rollouts of real commands on this machine (LocalTransport), with real HTTP gates.

"Hosts" are names in an inventory whose work lives in a directory of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from interlock.fleet.inventory import Host
from interlock.fleet.inventory_file import load_inventory
from interlock.fleet.transport.base import CommandResult
from interlock.fleet.transport.local import LocalTransport
from interlock.rollout.balancer import NoBalancer
from interlock.rollout.events import Event, EventBus
from interlock.rollout.journal import HostsLeased, Journal
from interlock.rollout.options import apply_options
from interlock.rollout.plan import Gate, HttpProbe, Plan, RunCommand, Soak
from interlock.rollout.runs import Session, execute, plan_for, settings_for, start_run
from interlock.rollout.spec import RolloutSpec, load_spec
from rollout.rollout_processes import Processes, free_port, wait_until


class RecordingTransport(LocalTransport):
    """The real local transport, remembering every command per host."""

    def __init__(self) -> None:
        self.commands: dict[str, list[tuple[str, ...]]] = {}

    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        self.commands.setdefault(host.name, []).append(tuple(argv))
        return await super().run(
            host, argv, input=input, timeout=timeout, remote_timeout=remote_timeout
        )


def write_inventory(path: Path, count: int) -> Path:
    lines = ["hosts:"]
    for index in range(count):
        role = ("controller", "compute", "network")[index % 3]
        lines.append(f"  h{index:02d}: {{address: 127.0.0.1, labels: {{role: {role}}}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def spec_file(tmp_path: Path, api_port: int, *, check: bool = True) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    check_line = f"  check: [test, -s, '{work}/{{name}}.count']\n" if check else ""
    text = (
        "transport: local\n"
        "action:\n"
        f"  command: [sh, -c, 'echo applied >> \"$1\"', sh, '{work}/{{name}}.count']\n"
        + check_line
        + "schedule:\n"
        "  canary: 1\n"
        "  waves: [50%, 100%]\n"
        "  max_unavailable: {role: 1}\n"
        "post_gates:\n"
        f"  probes: [{{http: 'http://127.0.0.1:{api_port}/health'}}]\n"
        "  passes: 2\n"
        "  interval: 50ms\n"
        "  soak: 100ms\n"
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def run_in_process(
    journal: Journal, plan: Plan, transport: RecordingTransport, settings: dict[str, object]
) -> tuple[str, list[Event]]:
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    run = start_run(journal, plan, settings)
    outcome = asyncio.run(
        execute(journal, run, bus, session=Session(transport, NoBalancer(), transport))
    )
    assert outcome.state == "complete", outcome
    return run.id, seen


def test_what_ran_is_what_the_plan_said(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    processes.api("health", "127.0.0.1", port)
    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", 7))
    spec = load_spec(spec_file(tmp_path, port))
    plan = plan_for(spec, inventory)
    transport = RecordingTransport()
    with Journal(tmp_path / "journal.sqlite") as journal:
        run_id, seen = run_in_process(journal, plan, transport, settings_for(spec, inventory))
        log = journal.log(run_id)
    # Per host: the steps it started are the plan's steps, in the plan's order.
    for host_plan in plan.hosts:
        name = host_plan.host.name
        started = [e.step for e in log if e.host == name and e.state == "started"]
        assert started == [step.id for step in host_plan.steps], name
        finished = [e.step for e in log if e.host == name and e.state != "started"]
        assert finished == started
        # The commands that ran on it: the work check (is there work?), then the action.
        action = host_plan.step("command").action
        assert isinstance(action, RunCommand) and action.check is not None
        assert transport.commands[name] == [action.check, action.argv]
        assert (tmp_path / "work" / f"{name}.count").read_text() == "applied\n"
    # Batches in plan order: every step of a batch before any of the next.
    last_of: dict[str, int] = {}
    first_of: dict[str, int] = {}
    for entry in log:
        last_of[entry.batch] = max(last_of.get(entry.batch, 0), entry.seq)
        first_of.setdefault(entry.batch, entry.seq)
    batches = [b.id for b in plan.batches]
    for earlier, later in itertools.pairwise(batches):
        assert last_of[earlier] < first_of[later]
    # Gates and soak ran as planned: 2 passes each, against the real server.
    gate = plan.hosts[0].step("health").action
    assert isinstance(gate, Gate) and gate.probes == (HttpProbe(f"http://127.0.0.1:{port}/health"),)
    soak = plan.hosts[0].step("soak").action
    assert isinstance(soak, Soak) and soak.seconds == 0.1
    details = {e.detail for e in seen if e.step == "health" and e.state == "done"}
    assert details == {"passed 2 round(s) in a row after 2"}


def test_a_repeated_run_does_nothing(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    processes.api("health", "127.0.0.1", port)
    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", 4))
    with Journal(tmp_path / "journal.sqlite") as journal:
        # With a check: the second run asks each host, which says "done", and touches nothing.
        spec = load_spec(spec_file(tmp_path, port))
        plan = plan_for(spec, inventory)
        run_in_process(journal, plan, RecordingTransport(), settings_for(spec, inventory))
        again = RecordingTransport()
        run_id, seen = run_in_process(journal, plan, again, settings_for(spec, inventory))
        for host_plan in plan.hosts:
            action = host_plan.step("command").action
            assert isinstance(action, RunCommand)
            assert again.commands[host_plan.host.name] == [action.check]
        assert {r.detail for r in journal.hosts(run_id)} == {"nothing to do"}
        assert not [e for e in seen if e.kind == "step-started"]
        # Without a check: the journal knows the same work was done, so nothing runs at all.
        plain_spec = load_spec(spec_file(tmp_path, port, check=False))
        plain = plan_for(plain_spec, inventory)
        run_in_process(journal, plain, RecordingTransport(), settings_for(plain_spec, inventory))
        third = RecordingTransport()
        third_id, _ = run_in_process(journal, plain, third, settings_for(plain_spec, inventory))
        assert third.commands == {}
        details = {r.detail or "" for r in journal.hosts(third_id)}
        assert len(details) == 1 and details.pop().startswith("already done in run")
    for index in range(4):
        assert (tmp_path / "work" / f"h{index:02d}.count").read_text() == "applied\napplied\n"


def test_a_running_rollout_holds_its_hosts_and_a_killed_one_until_resumed(
    tmp_path: Path, processes: Processes
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", 3)
    journal_path = tmp_path / "journal.sqlite"
    events = tmp_path / "events.jsonl"
    common = ["-i", str(inventory), "--transport", "local", "--journal", str(journal_path)]
    # The sleeps record their PIDs: a killed orchestrator leaves them running, and the test
    # ends them itself.
    sleeper = f"sh -c 'echo $$ > {tmp_path}/{{name}}.sleep; exec sleep 30'"
    slow = processes.rollout(
        "run",
        *common,
        "--command",
        sleeper,
        "--batch-size",
        "3",
        "--yes",
        "--no-progress",
        "--events",
        str(events),
    )
    for index in range(3):
        processes.pidfiles.append(tmp_path / f"h{index:02d}.sleep")
    wait_until(lambda: events.exists() and "host-started" in events.read_text(), "the hosts start")
    plan = plan_for(
        apply_options(load_spec_empty(tmp_path), {"--command": "true"}), load_inventory(inventory)
    )
    with Journal(journal_path) as journal:
        with pytest.raises(HostsLeased, match=r"is executing on h00, h01, h02"):
            start_run(journal, plan, {})
        slow.send_signal(signal.SIGKILL)
        slow.wait()
        # A child forked just before the kill shares the lock until it execs: a moment.
        killed = journal.latest_run().id
        wait_until(lambda: not journal.is_alive(killed), "the run lock to be released")
        with pytest.raises(HostsLeased, match=r"not executing\) holds h00, h01, h02: .*resume"):
            start_run(journal, plan, {})
        # The CLI refuses too, with the same advice.
        refused = processes.rollout("run", *common, "--command", "true", "--yes", log="refused.log")
        assert refused.wait(timeout=60) == 1
        assert "rollout resume" in (tmp_path / "refused.log").read_text()
        # Abort the killed run (its sleeps were interrupted mid-way): the hosts are free again.
        aborted = processes.rollout(
            "abort", "--yes", "--journal", str(journal_path), log="abort.log"
        )
        assert aborted.wait(timeout=60) == 0, (tmp_path / "abort.log").read_text()
        run = start_run(journal, plan, {})
        assert run.state == "running"


def load_spec_empty(tmp_path: Path) -> RolloutSpec:
    path = tmp_path / "empty.yaml"
    path.write_text("transport: local\n")
    return load_spec(path)


def test_cli_run_status_and_json_events(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    processes.api("health", "127.0.0.1", port)
    inventory = write_inventory(tmp_path / "inventory.yaml", 3)
    spec = spec_file(tmp_path, port)
    journal_path = tmp_path / "journal.sqlite"
    metrics = tmp_path / "rollout.prom"
    events = tmp_path / "events.jsonl"
    run = processes.rollout(
        "run",
        "-i",
        str(inventory),
        "--spec",
        str(spec),
        "--journal",
        str(journal_path),
        "--yes",
        "--json",
        "--events",
        str(events),
        "--metrics",
        str(metrics),
        "--log",
        str(tmp_path / "run.log"),
        log="run.out",
    )
    assert run.wait(timeout=120) == 0, (tmp_path / "run.out").read_text()
    outcome = json.loads((tmp_path / "run.out").read_text())
    assert (outcome["state"], outcome["done"], outcome["failed"]) == ("complete", 3, 0)
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds[0] == "run-started" and kinds[-1] == "run-finished"
    assert kinds.count("host-finished") == 3
    text = metrics.read_text()
    assert f'interlock_rollout_hosts{{run="{outcome["run"]}",state="done"}} 3' in text
    assert f'interlock_rollout_state{{run="{outcome["run"]}",state="complete"}} 1' in text
    assert 'interlock_rollout_step_seconds_count{run="' in text
    assert "host-finished h00 done" in (tmp_path / "run.log").read_text()
    status = processes.rollout("status", "--json", "--journal", str(journal_path), log="status.out")
    assert status.wait(timeout=60) == 0
    report = json.loads((tmp_path / "status.out").read_text())
    assert report["state"] == "complete" and report["counts"] == {"done": 3}
    assert [s["step"] for s in report["hosts"][0]["steps"]] == ["command", "health", "soak"]
    listing = processes.rollout(
        "status", "--list", "--json", "--journal", str(journal_path), log="list.out"
    )
    assert listing.wait(timeout=60) == 0
    runs = json.loads((tmp_path / "list.out").read_text())
    assert [(r["run"], r["state"], r["hosts"]) for r in runs] == [
        (outcome["run"], "complete", "3 done")
    ]


def test_the_journal_is_written_before_and_after_each_step(
    tmp_path: Path, processes: Processes
) -> None:
    """Each step's start is on disk (another connection sees it) while the step runs."""
    inventory = write_inventory(tmp_path / "inventory.yaml", 1)
    marker = tmp_path / "running"
    journal_path = tmp_path / "journal.sqlite"
    processes.pidfiles.append(marker)
    run = processes.rollout(
        "run",
        "-i",
        str(inventory),
        "--transport",
        "local",
        "--journal",
        str(journal_path),
        "--command",
        f"sh -c 'echo $$ > {marker}; exec sleep 30'",
        "--yes",
        "--no-progress",
    )
    wait_until(lambda: marker.exists() and marker.read_text().strip() != "", "the command to run")
    reader = sqlite3.connect(journal_path)
    try:
        rows = reader.execute("SELECT host, step, state FROM steps").fetchall()
        assert rows == [("h00", "command", "started")]
        assert reader.execute("SELECT state FROM hosts").fetchall() == [("running",)]
    finally:
        reader.close()
    run.send_signal(signal.SIGTERM)  # once: the host under way finishes... after 30 s; twice:
    time.sleep(0.2)
    run.send_signal(signal.SIGTERM)  # interrupted now, cleaned up, paused
    assert run.wait(timeout=60) == 3
    with Journal(journal_path) as journal:
        latest = journal.latest_run()
        assert latest.state == "paused"
        assert journal.hosts(latest.id)[0].detail == "interrupted"


MIGRATE = 'n=$(cat "$1" 2>/dev/null || echo 0); echo $((n + 1)) > "$1"; [ "$n" -ge 2 ] || exit 1'


def test_a_command_run_again_while_it_says_partial(tmp_path: Path) -> None:
    """Like online data migrations: exit 1 means "run me again", exit 2 means "stop"."""
    from interlock.rollout.plan import Batch, HostPlan, Step

    counter = tmp_path / "runs"
    migrate = RunCommand(
        ("sh", "-c", MIGRATE, "sh", str(counter)), again_exits=(1,), again_delay=0.01
    )
    refuse = RunCommand(("sh", "-c", "exit 2"), again_exits=(1,), again_delay=0.01)
    host = Host(name="ctl1", address="127.0.0.1")
    plan = Plan(
        "migrations",
        (Batch("b1", "all", (HostPlan(host, (Step("migrate", migrate, sticky=True),)),), 1),),
    )
    with Journal(tmp_path / "journal.sqlite") as journal:
        run_in_process(journal, plan, RecordingTransport(), {"transport": "local"})
        assert counter.read_text() == "3\n"
        step = journal.steps(journal.latest_run().id, "b1", "ctl1")["migrate"]
        assert step.detail is not None and step.detail.startswith("exit 0 after 3 runs")
        stopped = Plan(
            "migrations",
            (Batch("b1", "all", (HostPlan(host, (Step("migrate", refuse, sticky=True),)),), 1),),
        )
        run = start_run(journal, stopped, {"transport": "local"})
        transport = RecordingTransport()
        outcome = asyncio.run(
            execute(journal, run, EventBus(), session=Session(transport, NoBalancer(), transport))
        )
        assert outcome.state == "paused"
        assert journal.hosts(run.id)[0].detail == "migrate: exit 2"
        assert len(transport.commands["ctl1"]) == 1
