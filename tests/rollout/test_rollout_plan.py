"""The plan as data: steps per host, the printed tree, the stored JSON, the CLI that shows it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from interlock.cli import rollout as rollout_cli
from interlock.errors import UsageError
from interlock.facts import ledger
from interlock.fleet.inventory import Host
from interlock.fleet.status import FleetStatus, HostDebt
from interlock.host.ledger import DeferredEvent
from interlock.rollout.plan import (
    ApplyDeferred,
    CommandProbe,
    Debt,
    Drain,
    Enable,
    Gate,
    HttpProbe,
    Plan,
    PreGates,
    Restarted,
    RestartServices,
    RunCommand,
    Snapshot,
    Soak,
)
from interlock.rollout.planner import build_plan
from interlock.rollout.schedule import Amount, GroupLimit, Schedule
from interlock.rollout.spec import ActionSpec, DrainSpec, PostGateSpec, RolloutSpec
from interlock.rollout.window import parse_window

HOSTS = [
    Host(name="ctl1", address="10.0.0.11", labels={"role": "controller"}),
    Host(name="ctl2", address="10.0.0.12", labels={"role": "controller"}),
    Host(name="cmp1", address="10.0.0.21", labels={"role": "compute"}),
]

RESTART_SPEC = RolloutSpec(
    action=ActionSpec("restart", "service", services=("lab-api",), timeout=60),
    schedule=Schedule(
        canary=Amount(1), waves=(Amount(100, True),), limits=(GroupLimit("role", Amount(1)),)
    ),
    drain=DrainSpec(enabled=True, port=8080, timeout=20),
    post_gates=PostGateSpec(
        probes=(HttpProbe("http://{address}:8080/health"),), passes=3, interval=0.5, soak=5
    ),
    windows=(parse_window("mon-fri 22:00-04:00 Europe/Berlin"),),
)


def test_each_host_gets_its_steps_in_runbook_order() -> None:
    plan = build_plan(RESTART_SPEC, HOSTS)
    assert [b.stage for b in plan.batches] == ["canary", "wave 1"]
    assert [[hp.host.name for hp in b.hosts] for b in plan.batches] == [["ctl1"], ["ctl2", "cmp1"]]
    host = plan.batches[1].hosts[1]
    assert [s.id for s in host.steps] == [
        "snapshot",
        "drain",
        "restart",
        "restarted",
        "health",
        "soak",
        "enable",
    ]
    by_id = {s.id: s for s in host.steps}
    assert by_id["snapshot"].action == Snapshot(("lab-api",), False)
    assert by_id["drain"].action == Drain("10.0.0.21", 8080, 20, "fail")
    assert by_id["drain"].undo == Enable("10.0.0.21", 8080, 20)
    assert by_id["enable"].undoes == "drain"
    assert by_id["restart"].action == RestartServices(("lab-api",), "service", ("interlock",), 60)
    assert by_id["restart"].sticky and by_id["snapshot"].sticky and not by_id["drain"].sticky
    assert by_id["restarted"].action == Restarted("snapshot", 120)
    assert by_id["health"].action == Gate((HttpProbe("http://10.0.0.21:8080/health"),), 3, 0.5, 120)
    assert by_id["soak"].action == Soak(5, (HttpProbe("http://10.0.0.21:8080/health"),))
    assert host.work_check is None


def test_the_printed_plan_shows_the_exact_commands() -> None:
    text = str(build_plan(RESTART_SPEC, HOSTS))
    assert "3 hosts in 2 batches" in text
    assert "schedule: canary 1; waves 100%; max unavailable role=1" in text
    assert "maintenance window: mon-fri 22:00-04:00 Europe/Berlin" in text
    assert "Batch 1/2 · canary · 1 host (at most 1 at once)" in text
    assert "$ service lab-api restart" in text
    assert "GET http://10.0.0.12:8080/health → 200" in text
    assert "on failure: undo drain: set every haproxy server at 10.0.0.21:8080 ready" in text


def test_leave_drained_says_so_instead_of_undoing() -> None:
    spec = dataclasses.replace(
        RESTART_SPEC, drain=DrainSpec(enabled=True, on_failure="leave-drained")
    )
    host = build_plan(spec, HOSTS[:1]).hosts[0]
    drain = host.step("drain")
    assert drain.undo is None
    assert "stay drained" in (drain.left_on_failure or "")
    assert "after drain: its servers stay drained" in str(build_plan(spec, HOSTS[:1]))


def test_deferred_restarts_probe_the_ledger_first_and_snapshot_what_it_owes() -> None:
    plan = build_plan(RolloutSpec(), HOSTS)
    host = plan.hosts[0]
    assert host.work_check == "deferred"
    assert host.step("snapshot").action == Snapshot((), True)
    assert host.step("deferred").action == ApplyDeferred("interlock")
    assert "$ interlock restart --deferred-only --json --timeout 120" in str(plan)
    # Without waves or a batch size, one host at a time.
    assert [len(b.hosts) for b in plan.batches] == [1, 1, 1]


def test_commands_are_filled_per_host_and_a_check_makes_the_work_probe() -> None:
    spec = RolloutSpec(
        action=ActionSpec(
            "command", argv=("touch", "/run/{name}.done"), check=("test", "-e", "/run/{name}.done")
        )
    )
    host = build_plan(spec, HOSTS).hosts[1]
    assert host.step("command").action == RunCommand(
        ("touch", "/run/ctl2.done"), ("test", "-e", "/run/ctl2.done"), timeout=120
    )
    assert host.work_check == "command"
    assert [s.id for s in host.steps] == ["command"]


def test_pre_gate_commands_name_inventory_hosts() -> None:
    spec = dataclasses.replace(
        RESTART_SPEC, pre_gates=PreGates((CommandProbe(("rabbitmqctl", "status"), "mq1"),))
    )
    with pytest.raises(UsageError, match="no such host"):
        build_plan(spec, HOSTS, {h.name: h for h in HOSTS})
    mq = Host(name="mq1", address="10.0.0.5")
    plan = build_plan(spec, HOSTS, {mq.name: mq, **{h.name: h for h in HOSTS}})
    assert plan.gate_host("mq1") == mq


def test_the_stored_plan_is_the_same_plan() -> None:
    plan = build_plan(RESTART_SPEC, HOSTS)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert str(again) == str(plan)
    assert [hp.fingerprint for hp in again.hosts] == [hp.fingerprint for hp in plan.hosts]


def test_fingerprints_change_with_what_runs_on_the_host() -> None:
    first = build_plan(RESTART_SPEC, HOSTS).hosts
    same = build_plan(RESTART_SPEC, HOSTS).hosts
    assert [h.fingerprint for h in first] == [h.fingerprint for h in same]
    longer = dataclasses.replace(
        RESTART_SPEC, post_gates=dataclasses.replace(RESTART_SPEC.post_gates, soak=6)
    )
    changed = build_plan(longer, HOSTS).hosts
    assert all(a.fingerprint != b.fingerprint for a, b in zip(first, changed, strict=True))
    assert len({h.fingerprint for h in first}) == 3


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="interlock")
    commands = root.add_subparsers(dest="command", required=True)
    rollout_cli.register(commands)
    return root


def test_the_plan_command_prints_the_tree_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "hosts:\n"
        "  ctl1: {address: 10.0.0.11, groups: [controllers], labels: {role: controller}}\n"
        "  ctl2: {address: 10.0.0.12, groups: [controllers], labels: {role: controller}}\n"
        "  cmp1: {address: 10.0.0.21, groups: [computes], labels: {role: compute}}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("action: {restart: [lab-api]}\nschedule: {batch_size: 2}\n")
    args = parser().parse_args(
        [
            "rollout",
            "plan",
            "-i",
            str(inventory),
            "--spec",
            str(spec),
            "--limit",
            "controllers",
            "--max-unavailable",
            "role=1",
            "--gate",
            "http://{address}:8080/health",
        ]
    )
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "2 hosts in 2 batches" in text
    assert "GET http://10.0.0.12:8080/health → 200" in text
    args = parser().parse_args(
        ["rollout", "plan", "-i", str(inventory), "--spec", str(spec), "--json"]
    )
    assert args.handler(args) == 0
    stored = json.loads(capsys.readouterr().out)
    assert stored["@"] == "Plan"
    assert Plan.from_json(json.dumps(stored)).hosts[0].host.name == "ctl1"


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["rollout", "run", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text
    assert "exit status: 0 complete, 1 error, 3 paused" in text
    assert "--max-unavailable LABEL[:VALUE]=N|P%" in text


def test_a_plan_of_deferred_restarts_shows_what_each_host_owes() -> None:
    """The fleet status the plan is made from: ctl1's ledger as a lab controller answered it
    (tests/fixtures/facts), cmp1 owing nothing, ctl2 unreachable."""
    captured = Path(__file__).parent.parent / "fixtures" / "facts" / "ledger-ctl1-before.txt"
    ctl1 = ledger.parse(captured.read_text(), "@@interlock-fixture", "ctl1")
    empty = ledger.LedgerFact("cmp1")
    status = FleetStatus(
        [HostDebt(HOSTS[0], ctl1), HostDebt(HOSTS[2], empty)],
        [(HOSTS[1], "connection refused")],
        0.1,
    )
    spec = RolloutSpec(action=ActionSpec("deferred", "interlock"))
    plan = build_plan(spec, HOSTS, status=status)
    owed = {hp.host.name: hp for hp in plan.hosts}
    stamp = ctl1.events[0].timestamp
    assert owed["ctl1"].debt == (
        Debt("lab-api", stamp, ("Package update", "File(s) changed: /etc/lab-api/lab-api.conf")),
        Debt("nosuch", stamp, ("Package update",)),
    )
    assert owed["cmp1"].debt == ()
    assert (
        owed["ctl2"].debt is None and owed["ctl2"].debt_unread == "unreachable: connection refused"
    )
    text = str(plan)
    when = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"     owes lab-api since {when}: Package update; File(s) changed: " in text
    assert "     owes nothing now (its ledger is read again when its turn comes)" in text
    assert "     owes: unknown (unreachable: connection refused)" in text
    # The debt is for people: stored with the plan, but the work (and its fingerprint) is the
    # same whatever was owed when planning.
    assert Plan.from_json(plan.to_json()) == plan
    without = build_plan(spec, HOSTS)
    assert [h.fingerprint for h in plan.hosts] == [h.fingerprint for h in without.hosts]
    assert "owes" not in str(without)


def test_values_read_from_hosts_are_shown_as_plain_text() -> None:
    event = DeferredEvent("cron", "restart", "bad\x1b[31m red\nline", 1700000000, "x", "charm")
    status = FleetStatus([HostDebt(HOSTS[0], ledger.LedgerFact("ctl1", (event,)))], [], 0.1)
    spec = RolloutSpec(action=ActionSpec("deferred", "interlock"))
    [debt] = build_plan(spec, HOSTS[:1], status=status).hosts[0].debt or ()
    assert debt.reasons == ("bad [31m red line",)
