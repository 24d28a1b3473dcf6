"""The executor's logic: sliding window, max unavailable, failure budget, cleanup, resume, abort.

These use an in-process transport (the engine's seam); the same paths run against real
commands in test_rollout_local.py and the chaos test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from interlock.fleet.inventory import Host
from interlock.fleet.transport import CommandResult
from interlock.rollout import events
from interlock.rollout.journal import Journal
from interlock.rollout.plan import CommandProbe, PreGates
from interlock.rollout.runs import abort, skip
from interlock.rollout.schedule import Amount, GroupLimit, Schedule
from interlock.rollout.states import StepState
from interlock.rollout.window import WindowSchedule, parse_window
from rollout.rollout_fakes import Harness, ScriptedTransport, fleet, make_plan


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as opened:
        yield opened


def harness(journal: Journal, failing: Iterable[str] = (), duration: float = 0.0) -> Harness:
    return Harness(journal, ScriptedTransport(failing=set(failing), duration=duration))


def host_states(journal: Journal, run_id: str) -> dict[str, str]:
    return {record.host: record.state for record in journal.hosts(run_id)}


def test_every_host_done_in_order_and_flags_cleared(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(6), schedule=Schedule(canary=Amount(1), batch_size=Amount(2)))
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "complete"
    assert set(host_states(journal, run.id).values()) == {"done"}
    assert h.transport.applied == {f"h{i}": 1 for i in range(6)}
    assert all(not flags for flags in h.transport.flags.values())
    # Batches in order: every host of a batch finishes before the next batch starts one.
    order = [e.batch or "" for e in h.events if e.kind == events.HOST_STARTED]
    assert order == sorted(order)
    assert journal.run(run.id).state == "complete"


def test_failure_over_budget_pauses_after_the_batch_and_cleans_up(journal: Journal) -> None:
    h = harness(journal, failing={"h3"})
    plan = make_plan(fleet(8), schedule=Schedule(batch_size=Amount(2)))
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "paused"
    assert "over the failure budget of 0" in (outcome.reason or "")
    states = host_states(journal, run.id)
    assert states == {
        "h0": "done",
        "h1": "done",
        "h2": "done",
        "h3": "failed",
        "h4": "pending",
        "h5": "pending",
        "h6": "pending",
        "h7": "pending",
    }
    # The failed host was cleaned up: its flag is gone and the journal says so.
    assert "drained" not in h.transport.flags["h3"]
    steps = journal.steps(run.id, "b2", "h3")
    assert steps["work"].state == "failed"
    assert steps["mark:undo"].state == "done"
    assert "undid mark" in (journal.host(run.id, "b2", "h3").detail or "")
    # Nothing of later batches was touched.
    assert not h.transport.commands("h4")


def test_budget_lets_the_run_go_on_and_ends_paused_with_the_failures(journal: Journal) -> None:
    h = harness(journal, failing={"h1", "h4"})
    plan = make_plan(fleet(10), schedule=Schedule(batch_size=Amount(2)), budget=Amount(20, True))
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert (outcome.state, outcome.done, outcome.failed) == ("paused", 8, 2)
    assert "within the failure budget" in (outcome.reason or "")


def test_percent_budget_counts_against_the_whole_fleet(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        h = harness(journal, failing={"h1", "h4", "h5"})
        plan = make_plan(
            fleet(10), schedule=Schedule(batch_size=Amount(2)), budget=Amount(20, True)
        )
        run = h.start(plan)
        outcome = asyncio.run(h.execute(run))
        assert outcome.state == "paused"
        assert "3 host(s) failed, over the failure budget of 2" in (outcome.reason or "")
        assert host_states(journal, run.id)["h6"] == "pending"


def test_canary_failure_stops_whatever_the_budget(journal: Journal) -> None:
    h = harness(journal, failing={"h0"})
    plan = make_plan(
        fleet(5), schedule=Schedule(canary=Amount(1), batch_size=Amount(2)), budget=Amount(3)
    )
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "paused"
    assert (outcome.reason or "").startswith("canary h0 failed")
    assert outcome.pending == 4


def test_abort_on_failure_interrupts_hosts_under_way_and_cleans_them(journal: Journal) -> None:
    # h1 fails fast; h0, h2, h3 hang in their work and must be interrupted and cleaned up.
    h = harness(journal, failing={"h1"})
    plan = make_plan(fleet(4), on_failure="abort", hanging={"h0", "h2", "h3"})
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "aborted"
    states = host_states(journal, run.id)
    assert set(states.values()) == {"failed"}
    for name in ("h0", "h2", "h3"):
        assert (journal.host(run.id, "b1", name).detail or "").startswith("interrupted")
        assert "drained" not in h.transport.flags[name]
    # An aborted run has released its hosts.
    assert journal.db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_max_unavailable_counts_failed_hosts_and_pauses_when_blocked(journal: Journal) -> None:
    # Two controllers, limit 1: once ctl h0 fails it stays unavailable, so h2 must not start.
    hosts = fleet(4, role=["ctl", "cmp"])
    h = harness(journal, failing={"h0"})
    plan = make_plan(
        hosts,
        schedule=Schedule(batch_size=Amount(4)),
        limits=[GroupLimit("role", Amount(1))],
        budget=Amount(5),
    )
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "paused"
    assert "max unavailable reached for role=ctl" in (outcome.reason or "")
    states = host_states(journal, run.id)
    assert states["h0"] == "failed"
    assert states["h2"] == "pending"
    assert not h.transport.commands("h2")
    assert states["h1"] == states["h3"] == "done"


def test_max_unavailable_holds_at_every_moment(journal: Journal) -> None:
    hosts = fleet(12, role=["a", "b", "c"])
    h = harness(journal, duration=0.02)
    plan = make_plan(
        hosts,
        schedule=Schedule(batch_size=Amount(12)),
        limits=[GroupLimit("role", Amount(2))],
        concurrency=12,
    )
    asyncio.run(h.execute(h.start(plan)))
    # Replay starts and ends: never more than 2 hosts of one role at once.
    live: dict[str, set[str]] = {}
    role = {host.name: host.labels["role"] for host in hosts}
    for event in h.events:
        if event.kind == events.HOST_STARTED:
            live.setdefault(role[event.host or ""], set()).add(event.host or "")
            assert len(live[role[event.host or ""]]) <= 2
        elif event.kind == events.HOST_FINISHED:
            live[role[event.host or ""]].discard(event.host or "")


def test_sliding_window_never_exceeds_concurrency(journal: Journal) -> None:
    h = harness(journal, duration=0.02)
    plan = make_plan(fleet(9), concurrency=3)
    asyncio.run(h.execute(h.start(plan)))
    running = 0
    peak = 0
    for event in h.events:
        if event.kind == events.HOST_STARTED:
            running += 1
            peak = max(peak, running)
        elif event.kind == events.HOST_FINISHED:
            running -= 1
    assert peak == 3


def test_stagger_spaces_the_starts_inside_a_batch(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(3), stagger=0.2)
    asyncio.run(h.execute(h.start(plan)))
    starts = [e.time for e in h.events if e.kind == events.HOST_STARTED]
    assert all(later - earlier >= 0.19 for earlier, later in itertools.pairwise(starts))


def test_resume_after_pause_retries_failed_hosts_and_skip_leaves_one_out(journal: Journal) -> None:
    h = harness(journal, failing={"h1", "h2"})
    plan = make_plan(fleet(4), schedule=Schedule(batch_size=Amount(4)), budget=Amount(1))
    run = h.start(plan)
    first = asyncio.run(h.execute(run))
    assert first.state == "paused"
    assert first.failed == 2
    # The operator fixes h1 and gives up on h2.
    h.transport.failing = {"h2"}
    assert "h2 skipped" in skip(journal, journal.run(run.id), "h2")
    second = asyncio.run(h.execute(run))
    assert second.state == "complete"
    assert host_states(journal, run.id) == {
        "h0": "done",
        "h1": "done",
        "h2": "skipped",
        "h3": "done",
    }
    assert journal.host(run.id, "b1", "h1").attempt == 2
    # h1's failed work was retried once; h0 and h3 were not touched again.
    assert h.transport.applied == {"h0": 1, "h1": 1, "h3": 1}
    assert h.transport.commands("h2").count(("work",)) == 1


def test_a_step_started_but_not_finished_is_checked_not_redone(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(1))
    run = h.start(plan)
    # As a SIGKILL after the work but before its "done" would leave it:
    assert journal.claim_host(run.id, "b1", "h0") is not None
    journal.step_started(run.id, "b1", "h0", "mark", 1)
    journal.step_finished(run.id, "b1", "h0", "mark", 1, StepState.DONE)
    journal.step_started(run.id, "b1", "h0", "work", 1)
    h.transport.flags["h0"] = {"drained"}
    h.transport.applied["h0"] = 1
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "complete"
    assert h.transport.applied["h0"] == 1  # not applied twice
    assert ("applied",) in h.transport.commands("h0")
    assert journal.steps(run.id, "b1", "h0")["work"].detail == "found done when resuming"
    assert h.transport.flags["h0"] == set()


def test_two_interrupts_clean_up_hosts_under_way_and_resume_finishes(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(3), work=("hang",))
    run = h.start(plan)

    async def interrupted() -> None:
        task = asyncio.ensure_future(h.execute(run))
        while not all(h.transport.flags.get(f"h{i}") for i in range(3)):
            await asyncio.sleep(0.01)
        assert h.executor is not None
        h.executor.interrupt("SIGINT")
        h.executor.interrupt("SIGINT")
        outcome = await task
        assert outcome.state == "paused"

    asyncio.run(interrupted())
    assert set(host_states(journal, run.id).values()) == {"failed"}
    assert all(not flags for flags in h.transport.flags.values())
    notices = h.kinds(events.NOTICE)
    assert notices and "finishing the hosts under way" in (notices[0].detail or "")


def test_abort_of_a_stopped_run_cleans_up_what_a_crash_left(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(2))
    run = h.start(plan)
    # A crash after h0 was marked (drained) and while its work ran:
    journal.claim_host(run.id, "b1", "h0")
    journal.step_started(run.id, "b1", "h0", "mark", 1)
    journal.step_finished(run.id, "b1", "h0", "mark", 1, StepState.DONE)
    journal.step_started(run.id, "b1", "h0", "work", 1)
    h.transport.flags["h0"] = {"drained"}
    from interlock.rollout.balancer import NoBalancer
    from interlock.rollout.events import EventBus
    from interlock.rollout.runs import Session

    message = abort(journal, run, EventBus(), Session(h.transport, NoBalancer(), h.transport))
    assert message.startswith(f"run {run.id} aborted")
    assert h.transport.flags["h0"] == set()
    assert host_states(journal, run.id) == {"h0": "failed", "h1": "pending"}
    assert journal.run(run.id).state == "aborted"


def test_pre_gate_that_never_opens_pauses_before_touching_the_batch(journal: Journal) -> None:
    h = harness(journal)
    gates = PreGates((CommandProbe(("false",)),), interval=0.05, timeout=0.2)
    plan = make_plan(fleet(2), pre_gates=gates)
    run = h.start(plan)
    outcome = asyncio.run(h.execute(run))
    assert outcome.state == "paused"
    assert "pre-gates still closed after 0.2 s" in (outcome.reason or "")
    assert not h.transport.commands("h0")
    assert h.kinds(events.GATE_WAITING)


def test_closed_window_waits_for_the_next_opening(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(2), schedule=Schedule(batch_size=Amount(1)))
    plan = plan.__class__(
        plan.title,
        plan.batches,
        plan.limits,
        plan.failure_budget,
        plan.on_failure,
        WindowSchedule((parse_window("mon 22:00-23:00 UTC"),)),
    )
    clock = [datetime(2025, 3, 3, 21, 0, tzinfo=UTC)]  # Monday 21:00: an hour before it opens
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    run = h.start(plan)

    async def main() -> None:
        bus_events = h.events
        from interlock.rollout.actions import HostActions
        from interlock.rollout.balancer import NoBalancer
        from interlock.rollout.events import EventBus, WaitReports
        from interlock.rollout.executor import Executor
        from interlock.rollout.probes import ProbeRunner

        bus = EventBus()
        bus.subscribe(bus_events.append)
        probes = ProbeRunner(h.transport)
        reports = WaitReports(bus, run.id)
        executor = Executor(
            plan,
            run.id,
            journal,
            HostActions(h.transport, NoBalancer(), probes, reports),
            probes,
            bus,
            now=lambda: clock[0],
            sleep=fake_sleep,
            reports=reports,
        )
        outcome = await executor.run()
        assert outcome.state == "complete"

    asyncio.run(main())
    assert sum(slept) == 3600
    waits = h.kinds(events.WINDOW_WAITING)
    assert waits and "starts at 2025-03-03T22:00:00+00:00" in (waits[0].detail or "")


def test_abort_requested_from_outside_stops_a_live_run(journal: Journal) -> None:
    h = harness(journal)
    plan = make_plan(fleet(4), schedule=Schedule(batch_size=Amount(2)), hanging={"h0", "h1"})
    run = h.start(plan)

    async def main() -> None:
        task = asyncio.ensure_future(h.execute(run))
        while not all(h.transport.flags.get(name) for name in ("h0", "h1")):
            await asyncio.sleep(0.01)
        # What `interlock rollout abort` does while another process executes the run.
        assert journal.request_abort(run.id)
        outcome = await task
        assert outcome.state == "aborted"
        assert outcome.reason == "aborted by the operator"

    asyncio.run(main())
    assert host_states(journal, run.id) == {
        "h0": "failed",
        "h1": "failed",
        "h2": "pending",
        "h3": "pending",
    }
    assert all(not flags for flags in h.transport.flags.values())
    assert not h.transport.commands("h2")


def test_the_progress_view_follows_the_events(journal: Journal) -> None:
    from rich.console import Console

    from interlock.rollout.progress import ProgressView

    h = harness(journal, failing={"h2"})
    view = ProgressView()
    plan = make_plan(fleet(4), schedule=Schedule(batch_size=Amount(2)), budget=Amount(1))
    run = h.start(plan)
    h.events = []

    async def main() -> None:
        from interlock.rollout.balancer import NoBalancer
        from interlock.rollout.events import EventBus
        from interlock.rollout.runs import Session, execute

        bus = EventBus()
        bus.subscribe(view)
        await execute(journal, run, bus, session=Session(h.transport, NoBalancer(), h.transport))

    asyncio.run(main())
    console = Console(record=True, width=140)
    console.print(view.render())
    text = console.export_text()
    assert f"rollout {run.id}  paused" in text
    assert "batches 2/2" in text
    assert "done 3  failed 1" in text
    assert "h2" in text and "work: exit 1" in text


class SyncRecordingJournal(Journal):
    """Records, in order, each step start and whether it was synced, and each sync."""

    def __init__(self, path: Path, order: list[tuple[str, str]]) -> None:
        super().__init__(path)
        self.order = order

    def step_started(
        self, run_id: str, batch: str, host: str, step: str, attempt: int, *, synced: bool = True
    ) -> None:
        super().step_started(run_id, batch, host, step, attempt, synced=synced)
        self.order.append(("start" if not synced else "start synced", f"{host}/{step}"))

    def sync(self, run_id: str) -> None:
        super().sync(run_id)
        self.order.append(("sync", ""))


class OrderedTransport(ScriptedTransport):
    order: list[tuple[str, str]]

    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        self.order.append(("act", f"{host.name}/{argv[0]}"))
        return await super().run(
            host, argv, input=input, timeout=timeout, remote_timeout=remote_timeout
        )


def test_a_step_acts_only_after_its_start_is_synced_and_a_batch_shares_the_syncs(
    tmp_path: Path,
) -> None:
    order: list[tuple[str, str]] = []
    with SyncRecordingJournal(tmp_path / "journal.sqlite", order) as journal:
        transport = OrderedTransport()
        transport.order = order
        h = Harness(journal, transport)
        run = h.start(make_plan(fleet(10), schedule=Schedule(batch_size=Amount(10))))
        order.clear()
        assert asyncio.run(h.execute(run)).state == "complete"
    starts = [i for i, (what, _) in enumerate(order) if what.startswith("start")]
    acts = [i for i, (what, _) in enumerate(order) if what == "act"]
    syncs = [i for i, (what, _) in enumerate(order) if what == "sync"]
    assert len(starts) == 30 and len(acts) == 30  # mark, work, unmark on each of 10 hosts
    # Write-ahead: between each step's start record and its command there is a sync.
    for start in starts:
        host = order[start][1].partition("/")[0]
        act = next(i for i in acts if i > start and order[i][1].startswith(host + "/"))
        assert any(start < sync < act for sync in syncs), (order[start], order[act])
    assert all(what == "start" for what, _ in (order[i] for i in starts))
    # The ten hosts start each step together, so far fewer syncs than starts.
    assert len(syncs) <= 6, len(syncs)
