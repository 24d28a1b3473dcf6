"""The executor: runs a plan batch by batch, host by host, step by step, journalling each move.

The loop reads like the runbook: wait for the maintenance window; wait for the pre-gates; start
the batch's hosts through a sliding window (never more than the batch's concurrency, never more
unavailable hosts in a group than its limit, the stagger between starts); for each host, its
steps in order; on a failure, clean that host up and count it against the budget, then pause or
abort as the plan says.

Crash safety: the journal records a step as started before it runs and as finished after, each
in its own transaction. After a SIGKILL, `resume` finds a step started but not finished and asks
it again (work steps first check whether their work is already done), so every run converges
and no work is done twice. A host interrupted in any other way (Ctrl-C twice, abort, a failure)
gets its cleanup: every step with an undo that started is undone, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from interlock.coordination.backend import Coordination, Group, LocalCoordination
from interlock.errors import InterlockError
from interlock.fleet.inventory import Host
from interlock.rollout import events
from interlock.rollout.actions import HostActions
from interlock.rollout.events import Event, EventBus
from interlock.rollout.gates import wait_for_pre_gates
from interlock.rollout.journal import Journal, StepRecord
from interlock.rollout.plan import Batch, HostPlan, Plan
from interlock.rollout.probes import ProbeRunner
from interlock.rollout.schedule import GroupKey, GroupLimits, Rounding
from interlock.rollout.states import HOST_FINAL, HOST_STATES, HostState, RunState, StepState

CONTROL_POLL = 0.5  # how often a running executor looks for `abort` in the journal
UNDO_SUFFIX = ":undo"
T = TypeVar("T")


@dataclass(frozen=True)
class RunOutcome:
    state: RunState  # complete | paused | aborted
    reason: str | None
    done: int
    failed: int
    skipped: int
    pending: int


@dataclass(frozen=True)
class HostResult:
    state: HostState  # done | failed | skipped | pending (never started)
    detail: str | None = None


class _HostFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class _NotStarted(Exception):
    """The run stopped while the host waited for its slots: it stays pending."""


class _NothingToDo(Exception):
    """The host's work check says there is no work: the host is done without being touched."""


async def run_to_end(work: Awaitable[T]) -> tuple[T, bool]:
    """Await `work` to its end even if cancelled meanwhile (cleanup must finish); the flag says
    whether a cancellation arrived, for the caller to honour afterwards."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return task.result(), cancelled


def utc_now() -> datetime:
    return datetime.now(UTC)


class Executor:
    def __init__(
        self,
        plan: Plan,
        run_id: str,
        journal: Journal,
        actions: HostActions,
        probes: ProbeRunner,
        bus: EventBus,
        *,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        reports: events.WaitReports | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.journal = journal
        self.actions = actions
        self.probes = probes
        self.bus = bus
        self.now = now
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.limits = GroupLimits([hp.host for hp in plan.hosts], plan.limits)
        self.running: dict[str, Host] = {}
        self.failed: dict[str, Host] = {}  # failed in this session and not retried since
        self.stop_mode: str | None = None  # None | "pause" | "abort"
        self.stop_reason: str | None = None
        self.wake = asyncio.Event()
        self.interrupts = 0
        self.hard_stop = False
        # What the host steps wait for: "gate waiting" events of this run (the actions report
        # theirs to the same, when built with it).
        self.report_wait = reports or events.WaitReports(bus, run_id)
        # Slots shared with other actors (etcd), or nothing beyond this run's own limits.
        self.coordination = coordination or LocalCoordination()
        # Steps that start in the same turn of the event loop share one journal sync.
        self.pending_sync: asyncio.Future[None] | None = None
        self.coordination.notify = lambda detail: self.emit(events.NOTICE, detail=detail)

    # --- control ------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        self.bus.emit(Event(kind, self.run_id, **fields))

    def stop(self, mode: str, reason: str) -> None:
        """Stop starting hosts; an abort also interrupts the hosts under way (they clean up)."""
        if self.stop_mode is None or (mode == "abort" and self.stop_mode != "abort"):
            self.stop_mode = mode
            self.stop_reason = reason
        self.wake.set()

    def interrupt(self, signal_name: str = "SIGINT") -> None:
        """First signal: finish the hosts under way, then pause. Second: interrupt them too."""
        self.interrupts += 1
        if self.interrupts == 1:
            self.stop("pause", f"interrupted by {signal_name}: finishing the hosts under way")
            self.emit(
                events.NOTICE,
                detail=f"{signal_name}: finishing the hosts under way, "
                "then pausing (again to interrupt them; they will be cleaned up)",
            )
        else:
            self.stop("pause", f"interrupted by {signal_name}")
            self.hard_stop = True
            self.wake.set()

    async def watch_control(self) -> None:
        """Notice an `interlock rollout abort` issued from another process."""
        while True:
            await asyncio.sleep(CONTROL_POLL)
            if self.journal.run(self.run_id).state == RunState.ABORTING:
                self.stop("abort", "aborted by the operator")
                return

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Execute (or resume) the run; the caller holds the run lock."""
        self.journal.set_run_state(self.run_id, RunState.RUNNING)
        records = self.journal.hosts(self.run_id)
        self.emit(
            events.RUN_STARTED,
            data={
                "hosts": [r.host for r in records],
                "host_states": {r.host: r.state for r in records if r.state in HOST_FINAL},
                "batches": [
                    {"id": b.id, "stage": b.stage, "hosts": [hp.host.name for hp in b.hosts]}
                    for b in self.plan.batches
                ],
            },
        )
        watcher = asyncio.ensure_future(self.watch_control())
        try:
            for batch in self.plan.batches:
                if self.stop_mode:
                    break
                if all(
                    self.journal.host(self.run_id, batch.id, hp.host.name).state in HOST_FINAL
                    for hp in batch.hosts
                ):
                    continue
                if not await self.wait_for_window(batch):
                    break
                if not await self.pass_pre_gates(batch):
                    break
                started = time.monotonic()
                closes = self.plan.windows.closes_at(self.now())
                self.emit(
                    events.BATCH_STARTED,
                    batch=batch.id,
                    detail=batch.stage,
                    data={"window_closes": closes.isoformat()} if closes else {},
                )
                await self.run_batch(batch)
                self.emit(
                    events.BATCH_FINISHED,
                    batch=batch.id,
                    duration=time.monotonic() - started,
                    detail=batch.stage,
                )
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return self.finish()

    def finish(self) -> RunOutcome:
        records = self.journal.hosts(self.run_id)
        count = {state: sum(1 for r in records if r.state == state) for state in HOST_STATES}
        state: RunState
        if self.stop_mode == "abort":
            state, reason = RunState.ABORTED, self.stop_reason
        elif all(r.state in HOST_FINAL for r in records):
            state, reason = RunState.COMPLETE, None
        elif self.stop_mode == "pause":
            state, reason = RunState.PAUSED, self.stop_reason
        else:
            state = RunState.PAUSED
            reason = (
                f"{count[HostState.FAILED]} host(s) failed within the failure budget: "
                "`resume` retries them, `skip HOST` leaves one out"
            )
        self.journal.set_run_state(self.run_id, state, reason)
        outcome = RunOutcome(
            state,
            reason,
            count[HostState.DONE],
            count[HostState.FAILED],
            count[HostState.SKIPPED],
            count[HostState.PENDING] + count[HostState.RUNNING],
        )
        self.emit(events.RUN_FINISHED, state=state, detail=reason)
        return outcome

    async def wait_for_window(self, batch: Batch) -> bool:
        while not self.stop_mode:
            current = self.now()
            opens = self.plan.windows.next_open(current)
            if opens <= current:
                return True
            self.emit(
                events.WINDOW_WAITING,
                batch=batch.id,
                detail=f"outside the maintenance window ({self.plan.windows.describe()}); "
                f"batch {batch.id} starts at {opens.isoformat()}",
            )
            # In slices, so a stop or a clock change is noticed.
            delay = min((opens - current).total_seconds(), 60.0)
            waiter = asyncio.ensure_future(self.wake.wait())
            sleeper = asyncio.ensure_future(self.sleep(delay))
            await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, sleeper):
                task.cancel()
        return False

    async def pass_pre_gates(self, batch: Batch) -> bool:
        if not batch.pre_gates.probes:
            return True

        def report(detail: str) -> None:
            self.emit(events.GATE_WAITING, batch=batch.id, step="pre-gates", detail=detail)

        gate = asyncio.ensure_future(
            wait_for_pre_gates(batch.pre_gates, self.probes, self.plan, report)
        )
        waiter = asyncio.ensure_future(self.wake.wait())
        await asyncio.wait([gate, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not gate.done():
            gate.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gate
            return False
        try:
            detail = gate.result()
        except InterlockError as exc:
            self.stop(self.plan.on_failure, f"batch {batch.id}: {exc}")
            self.emit(
                events.GATE_WAITING,
                batch=batch.id,
                step="pre-gates",
                state=StepState.FAILED,
                detail=str(exc),
            )
            return False
        self.emit(events.GATE_PASSED, batch=batch.id, step="pre-gates", detail=detail)
        return True

    async def run_batch(self, batch: Batch) -> None:
        pending = [
            hp
            for hp in batch.hosts
            if self.journal.host(self.run_id, batch.id, hp.host.name).state not in HOST_FINAL
        ]
        tasks: dict[asyncio.Task[HostResult], HostPlan] = {}
        interrupted: set[asyncio.Task[HostResult]] = set()
        last_start: float | None = None
        gap = 0.0
        while True:
            if self.stop_mode == "abort" or self.hard_stop:
                for task in tasks:
                    if task not in interrupted:
                        interrupted.add(task)
                        task.cancel()
            while pending and not self.stop_mode and len(tasks) < batch.concurrency:
                candidate = self.next_host(pending)
                if candidate is None:
                    break
                if last_start is not None:
                    remaining = last_start + gap - time.monotonic()
                    if remaining > 0:
                        break  # the stagger: woken below when it has passed
                pending.remove(candidate)
                self.running[candidate.host.name] = candidate.host
                self.failed.pop(candidate.host.name, None)
                task = asyncio.ensure_future(self.run_host(batch, candidate))
                tasks[task] = candidate
                last_start = time.monotonic()
                gap = batch.stagger + (self.rng.uniform(0, batch.jitter) if batch.jitter else 0.0)
            if not tasks:
                if pending and not self.stop_mode:
                    blocked = self.blocking_reason(pending)
                    if blocked is not None:
                        self.stop("pause", blocked)
                        continue
                    await self.sleep_or_wake(max(0.0, (last_start or 0.0) + gap - time.monotonic()))
                    continue
                return
            timeout = None
            if pending and not self.stop_mode and last_start is not None:
                timeout = max(0.0, last_start + gap - time.monotonic())
            self.wake.clear()
            waiter = asyncio.ensure_future(self.wake.wait())
            waitables: list[asyncio.Future[Any]] = [*tasks, waiter]
            await asyncio.wait(waitables, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for finished in [t for t in tasks if t.done()]:
                self.host_finished(batch, tasks.pop(finished), finished)

    async def sleep_or_wake(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    def host_finished(
        self, batch: Batch, host_plan: HostPlan, task: asyncio.Task[HostResult]
    ) -> None:
        name = host_plan.host.name
        self.running.pop(name, None)
        if task.cancelled():
            self.failed[name] = host_plan.host
            return
        result = task.result()
        if result.state != HostState.FAILED:
            return
        self.failed[name] = host_plan.host
        budget = self.plan.failure_budget.of(len(self.plan.hosts), Rounding.DOWN)
        if batch.canary:
            self.stop(self.plan.on_failure, f"canary {name} failed: {result.detail}")
        elif len(self.failed) > budget:
            self.stop(
                self.plan.on_failure,
                f"{len(self.failed)} host(s) failed, over the failure budget of {budget} "
                f"(last: {name}: {result.detail})",
            )

    def group_counts(self) -> dict[GroupKey, int]:
        counts: dict[GroupKey, int] = {}
        for host in [*self.running.values(), *self.failed.values()]:
            for key in self.limits.groups_of(host):
                counts[key] = counts.get(key, 0) + 1
        return counts

    def next_host(self, pending: list[HostPlan]) -> HostPlan | None:
        counts = self.group_counts()
        for host_plan in pending:
            if self.limits.fits(host_plan.host, counts):
                return host_plan
        return None

    def blocking_reason(self, pending: list[HostPlan]) -> str | None:
        """Why no pending host may start although none runs: failed hosts fill a group."""
        counts = self.group_counts()
        if any(self.limits.fits(hp.host, counts) for hp in pending):
            return None
        first = pending[0].host
        groups = ", ".join(self.limits.blocking(first, counts))
        failed = ", ".join(sorted(self.failed))
        return (
            f"max unavailable reached for {groups} because of failed host(s) {failed}: "
            f"{first.name} cannot start (fix them and resume, or skip them)"
        )

    # --- one host -----------------------------------------------------------------------------

    async def run_host(self, batch: Batch, host_plan: HostPlan) -> HostResult:
        """The host's work while it holds a slot in each of its limited groups."""
        host = host_plan.host
        groups = [
            Group(f"{label}={value}", self.limits.limits[(label, value)])
            for label, value in self.limits.groups_of(host)
        ]

        def waiting(detail: str) -> None:
            if self.stop_mode:
                raise _NotStarted
            self.report_wait(host, "slot", detail)

        try:
            await self.coordination.acquire(host.name, groups, waiting)
        except _NotStarted:
            return HostResult(HostState.PENDING, "the run stopped while it waited for a slot")
        try:
            return await self.host_work(batch, host_plan)
        finally:
            await self.coordination.release(host.name)

    async def host_work(self, batch: Batch, host_plan: HostPlan) -> HostResult:
        host = host_plan.host
        claim = self.journal.claim_host(self.run_id, batch.id, host.name)
        if claim is None:
            return HostResult(HostState.SKIPPED, "done or skipped meanwhile")
        attempt = claim.attempt
        self.actions.begin_attempt(host)
        records = self.journal.steps(self.run_id, batch.id, host.name)
        if any(r.attempt < attempt or r.step.endswith(UNDO_SUFFIX) for r in records.values()):
            # A new attempt (or one whose cleanup had begun): transitions and checks again,
            # finished work stays finished.
            keep = {s.id for s in host_plan.steps if s.sticky}
            forget = [
                step_id
                for step_id, record in records.items()
                if not (step_id in keep and record.state == StepState.DONE)
            ]
            self.journal.reset_steps(self.run_id, batch.id, host.name, forget)
            records = self.journal.steps(self.run_id, batch.id, host.name)
        started = time.monotonic()
        self.emit(events.HOST_STARTED, batch=batch.id, host=host.name, data={"attempt": attempt})
        cancelled = False
        try:
            await self.host_steps(batch, host_plan, attempt, records)
        except _NothingToDo:
            why = self.actions.why_no_work(host)
            if why is None and host_plan.debt:
                owed = ", ".join(debt.service for debt in host_plan.debt)
                why = f"owed {owed} when planned, cleared meanwhile"
            return self.host_done(
                batch, host, started, "nothing to do" + (f" ({why})" if why else "")
            )
        except _HostFailed as failure:
            reason = str(failure)
        except asyncio.CancelledError:
            reason, cancelled = "interrupted", True
        else:
            return self.host_done(batch, host, started, None)
        summary, late_cancel = await run_to_end(self.cleanup(batch, host_plan, attempt))
        detail = reason + (f"; {summary}" if summary else "")
        self.journal.set_host(self.run_id, batch.id, host.name, HostState.FAILED, detail)
        self.emit(
            events.HOST_FINISHED,
            batch=batch.id,
            host=host.name,
            state=HostState.FAILED,
            detail=detail,
            duration=time.monotonic() - started,
        )
        if cancelled or late_cancel:
            raise asyncio.CancelledError
        return HostResult(HostState.FAILED, detail)

    async def host_steps(
        self, batch: Batch, host_plan: HostPlan, attempt: int, records: dict[str, StepRecord]
    ) -> None:
        """The host's steps in order, skipping what is done; _HostFailed on the first failure."""
        host = host_plan.host
        context = {sid: r.data for sid, r in records.items() if r.state == StepState.DONE}
        if host_plan.work_check is not None and not records:
            check = host_plan.step(host_plan.work_check)
            try:
                has_work = await self.actions.has_work(host, check.action)
            except InterlockError as exc:
                raise _HostFailed("check", str(exc)) from None
            if not has_work:
                raise _NothingToDo
        for step in host_plan.steps:
            record = records.get(step.id)
            if record is not None and record.state in (StepState.DONE, StepState.SKIPPED):
                continue
            if record is not None and record.state == StepState.STARTED and step.sticky:
                try:
                    verdict = await self.actions.is_done(host, step.action, context)
                except InterlockError as exc:
                    raise _HostFailed(step.id, f"cannot tell whether it was done: {exc}") from None
                if verdict:
                    self.record_step(
                        batch, host, step.id, attempt, StepState.DONE, "found done when resuming"
                    )
                    continue
            await self.run_step(batch, host, step.id, attempt, context, host_plan)

    def host_done(self, batch: Batch, host: Host, started: float, detail: str | None) -> HostResult:
        self.journal.set_host(self.run_id, batch.id, host.name, HostState.DONE, detail)
        self.emit(
            events.HOST_FINISHED,
            batch=batch.id,
            host=host.name,
            state=HostState.DONE,
            detail=detail,
            duration=time.monotonic() - started,
        )
        return HostResult(HostState.DONE, detail)

    async def run_step(
        self,
        batch: Batch,
        host: Host,
        step_id: str,
        attempt: int,
        context: dict[str, dict[str, object]],
        host_plan: HostPlan,
    ) -> None:
        step = host_plan.step(step_id)
        await self.record_start(batch, host, step.id, attempt, step.description)
        began = time.monotonic()
        try:
            outcome = await self.actions.perform(host, step.id, step.action, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any error fails this host, never the run
            reason = str(exc) if isinstance(exc, InterlockError) else f"{type(exc).__name__}: {exc}"
            self.record_step(batch, host, step.id, attempt, StepState.FAILED, reason, began=began)
            raise _HostFailed(step.id, reason) from None
        self.record_step(
            batch, host, step.id, attempt, StepState.DONE, outcome.detail, outcome.data, began=began
        )
        context[step.id] = outcome.data

    async def record_start(
        self,
        batch: Batch,
        host: Host,
        step_id: str,
        attempt: int,
        detail: str | None,
        *,
        kind: str | None = None,
    ) -> None:
        """A step is about to act: its start is on disk before this returns."""
        self.record_step(
            batch, host, step_id, attempt, StepState.STARTED, detail, kind=kind, synced=False
        )
        await self.journal_synced()

    async def journal_synced(self) -> None:
        """Wait until the journal is on disk up to now. Every host that asks in the same turn
        of the event loop (a batch's hosts starting a step together) shares one sync."""
        if self.pending_sync is None:
            loop = asyncio.get_running_loop()
            self.pending_sync = loop.create_future()
            loop.call_soon(self.sync_journal, self.pending_sync)
        await asyncio.shield(self.pending_sync)

    def sync_journal(self, done: asyncio.Future[None]) -> None:
        self.pending_sync = None
        try:
            self.journal.sync(self.run_id)
        except Exception as exc:  # noqa: BLE001 - every waiter gets the journal's error
            done.set_exception(exc)
        else:
            done.set_result(None)

    def record_step(
        self,
        batch: Batch,
        host: Host,
        step_id: str,
        attempt: int,
        state: StepState,
        detail: str | None,
        data: dict[str, Any] | None = None,
        *,
        began: float | None = None,
        kind: str | None = None,
        synced: bool = True,
    ) -> None:
        """A step's state change: in the journal first, then as an event (a step-started or
        step-finished, or `kind` for cleanup steps) with its duration since `began`."""
        if state == StepState.STARTED:
            self.journal.step_started(
                self.run_id, batch.id, host.name, step_id, attempt, synced=synced
            )
        else:
            self.journal.step_finished(
                self.run_id, batch.id, host.name, step_id, attempt, state, detail, data
            )
        fields: dict[str, Any] = {"batch": batch.id, "host": host.name, "step": step_id}
        if kind is not None or state != StepState.STARTED:
            fields["state"] = state
        if began is not None:
            fields["duration"] = time.monotonic() - began
        started = events.STEP_STARTED if state == StepState.STARTED else events.STEP_FINISHED
        self.emit(kind or started, detail=detail, **fields)

    async def cleanup(self, batch: Batch, host_plan: HostPlan, attempt: int) -> str:
        """Undo, newest first, every started step whose undo has not happened; say what stays."""
        host = host_plan.host
        records = self.journal.steps(self.run_id, batch.id, host.name)
        notes: list[str] = []
        for step in reversed(host_plan.steps):
            record = records.get(step.id)
            if record is None or record.state not in (
                StepState.STARTED,
                StepState.DONE,
                StepState.FAILED,
            ):
                continue
            if step.left_on_failure:
                notes.append(f"{host.name}: {step.left_on_failure}")
            if step.undo is None:
                continue
            partner = next((s for s in host_plan.steps if s.undoes == step.id), None)
            if (
                partner is not None
                and records.get(partner.id, None) is not None
                and (records[partner.id].state == StepState.DONE)
            ):
                continue
            undo_id = step.id + UNDO_SUFFIX
            undone = records.get(undo_id)
            if undone is not None and undone.state == StepState.DONE:
                continue
            await self.record_start(
                batch, host, undo_id, attempt, step.undo.describe(), kind=events.CLEANUP
            )
            began = time.monotonic()
            state: StepState
            try:
                detail, state = await self.actions.undo(host, step.undo), StepState.DONE
            except Exception as exc:  # noqa: BLE001 - report every cleanup failure, go on
                detail = str(exc) if isinstance(exc, InterlockError) else repr(exc)
                state = StepState.FAILED
            self.record_step(
                batch, host, undo_id, attempt, state, detail, began=began, kind=events.CLEANUP
            )
            if state == StepState.FAILED:
                notes.append(f"undo of {step.id} FAILED: {detail}")
                continue
            notes.append(f"undid {step.id}")
        return "cleanup: " + "; ".join(notes) if notes else ""

    async def clean_interrupted(self) -> list[str]:
        """For `abort` of a run nobody executes: clean up the hosts a crash left mid-way."""
        cleaned: list[str] = []
        for record in self.journal.hosts(self.run_id):
            if record.state != HostState.RUNNING:
                continue
            batch = self.plan.batch(record.batch)
            host_plan = next(hp for hp in batch.hosts if hp.host.name == record.host)
            summary = await self.cleanup(batch, host_plan, record.attempt)
            self.journal.set_host(
                self.run_id,
                batch.id,
                record.host,
                HostState.FAILED,
                "aborted" + (f"; {summary}" if summary else ""),
            )
            cleaned.append(f"{record.host}: {summary or 'nothing to undo'}")
        return cleaned
