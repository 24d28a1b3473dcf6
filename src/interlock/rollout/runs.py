"""Operations on runs: start, resume, skip a host, abort, status. The CLI is a thin layer on these.

A run stores everything it needs to continue (the plan, how to reach the hosts and the load
balancers), so `resume` and `abort` work from the journal alone, even if the spec or the
inventory changed since: what was planned is what continues.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from interlock.coordination.backend import Coordination
from interlock.coordination.selection import open_coordination
from interlock.errors import InterlockError, UsageError
from interlock.fleet.inventory import Inventory, LoadBalancer
from interlock.fleet.status import gather_status_sync
from interlock.fleet.transport.base import Transport
from interlock.fleet.transport.kinds import open_transport
from interlock.rollout.actions import HostActions
from interlock.rollout.balancer import Balancer, HaproxyBalancer, NoBalancer
from interlock.rollout.events import EventBus, WaitReports
from interlock.rollout.executor import Executor, RunOutcome
from interlock.rollout.journal import Journal, RunRecord
from interlock.rollout.plan import Drain, Plan, decode, encode
from interlock.rollout.planner import build_plan
from interlock.rollout.probes import ProbeRunner
from interlock.rollout.spec import RolloutSpec
from interlock.rollout.states import HOST_FINAL, RUN_FINAL, RunKind, RunState

ExecutorHook = Callable[[Executor], None]


def plan_for(spec: RolloutSpec, inventory: Inventory, *, read_debt: bool = True) -> Plan:
    """The plan; for deferred restarts (unless not `read_debt`) from the fleet status, read
    once per host, so the plan shows what each host owes."""
    hosts = inventory.select(spec.limit)
    status = None
    if read_debt and spec.action.kind == "deferred" and hosts:
        transport = transport_for(settings_for(spec, inventory))
        status = gather_status_sync(hosts, transport, ledger_dir=spec.ledger_dir)
    return build_plan(spec, hosts, inventory.hosts, status)


def settings_for(spec: RolloutSpec, inventory: Inventory) -> dict[str, Any]:
    """How to reach the hosts and the LBs later, without the inventory file."""
    lb_hosts = {
        lb.host: encode(inventory.hosts[lb.host])
        for lb in inventory.loadbalancers.values()
        if lb.host is not None and lb.host in inventory.hosts
    }
    return {
        "transport": spec.transport,
        "inventory": inventory.path,
        "known_hosts": inventory.known_hosts,
        "loadbalancers": [encode(lb) for lb in inventory.loadbalancers.values()],
        "lb_hosts": lb_hosts,
        "spec": spec.path,
        "coordination": spec.coordination,
    }


def start_run(
    journal: Journal,
    plan: Plan,
    settings: dict[str, Any],
    *,
    kind: RunKind = RunKind.ROLLOUT,
    again: bool = False,
) -> RunRecord:
    """Record a new run of this kind (taking the host leases); hosts whose same work finished
    before start as done, unless `again`. Hosts whose action can check for work always check
    instead."""
    # Keyed by (host, fingerprint): a host in several batches (an upgrade's projects) is done
    # only for the pieces of work that an earlier run finished.
    done_before: dict[tuple[str, str], str] = {}
    if not again:
        for host_plan in plan.hosts:
            if host_plan.work_check is not None:
                continue
            earlier = journal.done_before(host_plan.host.name, host_plan.fingerprint)
            if earlier is not None:
                done_before[(host_plan.host.name, host_plan.fingerprint)] = earlier
    return journal.create_run(plan, settings, kind=kind, done_before=done_before)


def pick_run(
    journal: Journal, run_id: str | None, *, active: bool, kind: RunKind | None = None
) -> RunRecord:
    """The given run, else the latest (unfinished if `active`, of this kind if given)."""
    if run_id is not None:
        return journal.run(run_id)
    return journal.latest_run(active_only=active, kind=kind)


def transport_for(settings: Mapping[str, Any]) -> Transport:
    return open_transport(settings.get("transport", "ssh"), settings.get("known_hosts"))


def open_balancer(settings: Mapping[str, Any], plan: Plan, transport: Transport) -> Balancer:
    """Runtime-API clients for the stored load balancers, if any step drains."""
    needs = any(isinstance(step.action, Drain) for hp in plan.hosts for step in hp.steps)
    loadbalancers = [decode(item) for item in settings.get("loadbalancers", [])]
    if not needs or not loadbalancers:
        return NoBalancer()
    from interlock.lb.endpoints import remote_client
    from interlock.lb.runtime import RuntimeClient, TcpOpener, UnixSocketOpener

    hosts = {name: decode(data) for name, data in settings.get("lb_hosts", {}).items()}
    inventory = Inventory(path=settings.get("inventory"), hosts=hosts, groups={}, loadbalancers={})
    clients: list[RuntimeClient] = []
    for lb in loadbalancers:
        assert isinstance(lb, LoadBalancer)
        if lb.host is not None:
            from interlock.fleet.transport.ssh import SshTransport

            if not isinstance(transport, SshTransport):
                raise UsageError(f"load balancer {lb.name} is reached over SSH: use transport ssh")
            clients.append(remote_client(inventory, lb, lb.host, transport))
        elif lb.tcp is not None:
            clients.append(RuntimeClient(lb.name, TcpOpener.parse(lb.tcp)))
        elif lb.socket is not None:
            clients.append(RuntimeClient(lb.name, UnixSocketOpener(lb.socket)))
    return HaproxyBalancer(clients)


@dataclass
class Session:
    """What executing a run needs besides the journal; tests may bring their own."""

    transport: Transport
    balancer: Balancer
    local: Transport

    async def close(self) -> None:
        await self.balancer.close()
        await self.transport.close()
        if self.local is not self.transport:
            await self.local.close()


def open_session(run: RunRecord) -> Session:
    from interlock.fleet.transport.local import LocalTransport

    transport = transport_for(run.settings)
    local = transport if isinstance(transport, LocalTransport) else LocalTransport()
    return Session(transport, open_balancer(run.settings, run.plan, transport), local)


async def execute(
    journal: Journal,
    run: RunRecord,
    bus: EventBus,
    *,
    session: Session | None = None,
    on_executor: ExecutorHook | None = None,
    coordination: Coordination | None = None,
) -> RunOutcome:
    """Execute (or resume) a run while holding its lock; closes the session afterwards.

    Coordination: the one given, else the one the run was started with (its spec's)."""
    if run.finished:
        raise InterlockError(f"run {run.id} is {run.state}: nothing to resume")
    lock = journal.lock_run(run.id)
    finished = False
    try:
        current = journal.run(run.id)  # re-read under the lock
        if current.finished:
            raise InterlockError(f"run {run.id} is {current.state}: nothing to resume")
        # Aborting only undoes (drains, masks): it needs no slot, and works with etcd down.
        shared = (
            None if current.state == RunState.ABORTING else current.settings.get("coordination")
        )
        slots = coordination or open_coordination(shared)
        await slots.open(run.id, current.kind, current.plan.title)
        try:
            chosen = session or open_session(current)
            try:
                plan = current.plan
                probes = ProbeRunner(chosen.transport, chosen.local)
                reports = WaitReports(bus, run.id)
                actions = HostActions(chosen.transport, chosen.balancer, probes, reports)
                executor = Executor(
                    plan,
                    run.id,
                    journal,
                    actions,
                    probes,
                    bus,
                    reports=reports,
                    coordination=slots,
                )
                if on_executor is not None:
                    on_executor(executor)
                if current.state == RunState.ABORTING:
                    outcome = await abort_here(executor)
                else:
                    outcome = await executor.run()
                finished = outcome.state in RUN_FINAL
                return outcome
            finally:
                await chosen.close()
        finally:
            await slots.close()
    finally:
        lock.release(remove=finished)


def execute_in_foreground(
    journal: Journal,
    run: RunRecord,
    bus: EventBus,
    *,
    coordination: Coordination | None = None,
) -> RunOutcome:
    """Execute (or resume) a run in this process: SIGINT or SIGTERM once finishes the hosts
    under way and pauses, twice interrupts them too (they are cleaned up)."""

    def install(executor: Executor) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, executor.interrupt, signal.Signals(signum).name)

    return asyncio.run(execute(journal, run, bus, on_executor=install, coordination=coordination))


async def abort_here(executor: Executor) -> RunOutcome:
    """Abort a run nobody executes: clean up the hosts it left mid-way, then end it."""
    await executor.clean_interrupted()
    executor.stop("abort", "aborted by the operator")
    return executor.finish()


def abort(journal: Journal, run: RunRecord, bus: EventBus, session: Session | None = None) -> str:
    """Abort a run: a live one is told through the journal; a stopped one is cleaned up here."""
    if run.finished:
        raise InterlockError(f"run {run.id} is already {run.state}")
    journal.request_abort(run.id)
    if journal.is_alive(run.id):
        return (
            f"abort requested: run {run.id} stops starting hosts, cleans up the ones under way, "
            "and ends as aborted"
        )
    outcome = asyncio.run(execute(journal, journal.run(run.id), bus, session=session))
    return f"run {run.id} {outcome.state}" + (f": {outcome.reason}" if outcome.reason else "")


def skip(journal: Journal, run: RunRecord, host: str) -> str:
    if run.finished:
        raise InterlockError(f"run {run.id} is {run.state}: nothing to skip")
    batches = journal.skip_host(run.id, host)
    if not batches:
        return f"{host} was not pending or failed in run {run.id}: nothing changed"
    return f"{host} skipped in run {run.id} (batch {', '.join(batches)})"


def status(journal: Journal, run: RunRecord) -> dict[str, Any]:
    """The run, each host's state and step, and what is going on now, as plain data."""
    hosts = journal.hosts(run.id)
    plan = run.plan
    steps = journal.all_steps(run.id)
    by_host: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for step in steps:
        by_host.setdefault((step.batch, step.host), []).append(
            {
                "step": step.step,
                "state": step.state,
                "attempt": step.attempt,
                "seconds": None if step.duration is None else round(step.duration, 3),
                "detail": step.detail,
            }
        )
    stages = {batch.id: batch.stage for batch in plan.batches}
    counts: dict[str, int] = {}
    for record in hosts:
        counts[record.state] = counts.get(record.state, 0) + 1
    return {
        "run": run.id,
        "state": run.state,
        "reason": run.reason,
        "executing": journal.is_alive(run.id),
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created)),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.updated)),
        "title": plan.title,
        "counts": counts,
        "complete": all(record.state in HOST_FINAL for record in hosts),
        "hosts": [
            {
                "host": record.host,
                "batch": record.batch,
                "stage": stages.get(record.batch, "?"),
                "state": record.state,
                "attempt": record.attempt,
                "detail": record.detail,
                "steps": by_host.get((record.batch, record.host), []),
            }
            for record in hosts
        ],
    }


def recent_runs(journal: Journal, limit: int) -> list[dict[str, Any]]:
    """The last runs, newest first, in a line each."""
    result = []
    for run in journal.runs(limit):
        counts: dict[str, int] = {}
        for record in journal.hosts(run.id):
            counts[record.state] = counts.get(record.state, 0) + 1
        result.append(
            {
                "run": run.id,
                "state": run.state,
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created)),
                "hosts": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
                "title": run.plan.title,
            }
        )
    return result
