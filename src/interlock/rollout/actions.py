"""What each step does on a host, through the transport (and the load balancers).

Every step can be asked twice without harm: a resumed run re-asks a step that was started but not
recorded as finished. Work steps make that safe themselves: a restart skips services that have
already restarted since the snapshot; the deferred restarts first clear the events whose service
has started since (`interlock check`), then restart only what the ledger still owes; a command
may carry a check that says it is done.

A host's ledger is read once per attempt (the ledger fact, with its services' states): whether
there is work, the snapshot of the deferred services and the restarts all use that one read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.facts import ledger as ledger_fact
from interlock.facts import service_state
from interlock.facts.ledger import LedgerFact
from interlock.facts.reading import run_fact
from interlock.facts.sections import new_marker
from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import CommandResult, Transport
from interlock.host.services.base import ServiceState
from interlock.rollout import ledger_removal
from interlock.rollout.balancer import Balancer
from interlock.rollout.gates import (
    health_gate,
    recorded_services,
    restarted,
    soak,
    wait_restarted,
)
from interlock.rollout.outcome import StepFailed, StepOutcome, WaitReporter
from interlock.rollout.plan import (
    Action,
    ApplyDeferred,
    Drain,
    Enable,
    Gate,
    Restarted,
    RestartServices,
    RunCommand,
    Snapshot,
)
from interlock.rollout.probes import ProbeRunner
from interlock.rollout.reboot import came_back, has_reboot_work, is_rebooted, reboot, record_boot
from interlock.rollout.reboot_steps import BootRecord, CameBack, Reboot

PROBE_TIMEOUT = 30.0


class HostActions:
    """Performs plan steps on hosts; waits are reported to `report_wait` (the event stream)."""

    def __init__(
        self,
        transport: Transport,
        balancer: Balancer,
        probes: ProbeRunner,
        report_wait: WaitReporter | None = None,
    ) -> None:
        self.transport = transport
        self.balancer = balancer
        self.probes = probes
        self.report_wait = report_wait or (lambda host, step, detail: None)
        # Each host's ledger as this attempt read it (`begin_attempt` forgets it).
        self.ledgers: dict[str, LedgerFact] = {}

    def begin_attempt(self, host: Host) -> None:
        """A new attempt on the host reads its ledger afresh."""
        self.ledgers.pop(host.name, None)

    # --- the three questions the executor asks --------------------------------------------------

    async def perform(
        self, host: Host, step_id: str, action: Action, context: Mapping[str, dict[str, Any]]
    ) -> StepOutcome:
        """Do the step; `context` holds the data earlier steps of this host recorded."""
        if isinstance(action, RunCommand):
            return await self.run_command(host, step_id, action)
        if isinstance(action, RestartServices):
            return await self.restart(host, action, context)
        if isinstance(action, ApplyDeferred):
            return await self.apply_deferred(host, action, context)
        if isinstance(action, Snapshot):
            return await self.snapshot(host, action)
        if isinstance(action, Drain):
            detail = await self.balancer.drain(
                host, action.address, action.port, action.timeout, action.on_timeout
            )
            return StepOutcome(detail)
        if isinstance(action, Enable):
            return StepOutcome(
                await self.balancer.enable(host, action.address, action.port, action.timeout)
            )
        if isinstance(action, Gate):
            return await health_gate(host, step_id, action, self.probes, self.report_wait)
        if isinstance(action, Restarted):
            return await self.restarted(host, step_id, action, context)
        if isinstance(action, BootRecord):
            return await record_boot(self, host)
        if isinstance(action, Reboot):
            return await reboot(self, host, step_id, action, context)
        if isinstance(action, CameBack):
            return await came_back(self, host, step_id, action, context)
        return await soak(host, step_id, action, self.probes, self.report_wait)

    async def is_done(
        self, host: Host, action: Action, context: Mapping[str, dict[str, Any]]
    ) -> bool | None:
        """For a work step found started but not finished: done already (True), not (False),
        or no way to tell (None: do it again)."""
        if isinstance(action, RunCommand):
            if action.check is None:
                return None
            result = await self.transport.run(host, action.check, timeout=PROBE_TIMEOUT)
            return result.ok
        if isinstance(action, ApplyDeferred):
            ledger = await self.ledger(host, action.ledger_dir)
            if ledger.pending:
                return False
            if ledger.events:
                # The interrupted try restarted them but was killed before it cleared them.
                await self.clear_paid(host, action, ledger, ledger.services)
                # A deferral requested again meanwhile stays, and is work still to do.
                return not (await self.ledger(host, action.ledger_dir, fresh=True)).pending
            return True
        if isinstance(action, RestartServices):
            pending = await self.not_restarted(host, action.services, context)
            return None if pending is None else not pending
        if isinstance(action, Reboot):
            return await is_rebooted(self, host, action, context)
        return None

    async def has_work(self, host: Host, action: Action) -> bool:
        """Before a host is touched at all: is there anything for it to do?"""
        if isinstance(action, ApplyDeferred):
            ledger = await self.ledger(host, action.ledger_dir, fresh=True)
            if ledger.problems and not ledger.events:
                raise StepFailed("unreadable ledger: " + "; ".join(ledger.problems))
            if ledger.events and not ledger.pending:
                # Paid meanwhile: every service has started since its events; clear them.
                await self.clear_paid(host, action, ledger, ledger.services)
            return bool(ledger.pending)
        if isinstance(action, RunCommand) and action.check is not None:
            result = await self.transport.run(host, action.check, timeout=PROBE_TIMEOUT)
            return not result.ok
        if isinstance(action, Reboot):
            return await has_reboot_work(self, host, action)
        return True

    def why_no_work(self, host: Host) -> str | None:
        """What the attempt's ledger read found paid since the plan, if it read one."""
        ledger = self.ledgers.get(host.name)
        if ledger is None or not ledger.events:
            return None
        return "paid meanwhile: " + ", ".join(
            f"{name} restarted since its event" for name in ledger.services
        )

    # --- work ---------------------------------------------------------------------------------

    async def run_command(self, host: Host, step_id: str, action: RunCommand) -> StepOutcome:
        runs = 0
        while True:
            runs += 1
            result = await self.transport.run(host, action.argv, timeout=action.timeout)
            status = result.exit_status
            if status in action.ok_exits:
                again = f" after {runs} runs" if runs > 1 else ""
                return StepOutcome(f"exit {status}{again} ({result.duration:.2f} s)")
            if status not in action.again_exits:
                raise StepFailed(f"{_command_failure(result)}")
            if runs >= action.again_limit:
                raise StepFailed(f"still exit {status} after {runs} runs")
            self.report_wait(host, step_id, f"exit {status}: running it again")
            await asyncio.sleep(action.again_delay)

    async def restart(
        self, host: Host, action: RestartServices, context: Mapping[str, dict[str, Any]]
    ) -> StepOutcome:
        # Only what has not restarted since the snapshot: a resumed run restarts nothing twice.
        pending = await self.not_restarted(host, action.services, context)
        services = list(action.services) if pending is None else pending
        if not services:
            return StepOutcome("already restarted since the snapshot")
        selected = RestartServices(tuple(services), action.via, action.interlock, action.timeout)
        for argv in selected.argvs():
            result = await self.transport.run(host, argv, timeout=action.timeout + 30)
            if not result.ok:
                raise StepFailed(_command_failure(result))
            if action.via == "interlock":
                check_restart_report(result)
        return StepOutcome("restarted " + ", ".join(services))

    async def apply_deferred(
        self, host: Host, action: ApplyDeferred, context: Mapping[str, dict[str, Any]]
    ) -> StepOutcome:
        ledger = await self.ledger(host, action.ledger_dir)
        if action.via == "interlock":
            if len(ledger.pending) < len(ledger.events):
                # Events whose service already restarted (an interrupted earlier try) are
                # cleared first, so nothing is restarted twice.
                await self.clear_paid(host, action, ledger, [])
            # The timeout is per service inside interlock; the whole command gets all of them.
            bound = action.timeout * (len(ledger.services) + 1) + 30
            result = await self.transport.run(host, action.argv(), timeout=bound)
            if result.exit_status == 127:
                raise StepFailed(f"{action.interlock[0]} is not installed on {host.name}")
            report = check_restart_report(result)
            names = [str(o["service"]) for o in report.get("outcomes", []) if o.get("ok")]
            return StepOutcome(
                "restarted " + ", ".join(names) if names else "nothing was owed a restart",
                {"restarted": names},
            )
        if ledger.problems:
            raise StepFailed("unreadable ledger: " + "; ".join(ledger.problems))
        services = ledger.services
        if not services:
            return StepOutcome("nothing was owed a restart", {"restarted": []})
        # Restarted since the snapshot (by an interrupted earlier try): only its events remain.
        already = await self.not_restarted(host, services, context)
        done: list[str] = []
        kept = 0
        for service in services:
            if already is not None and service not in already:
                kept += await self.remove_events(host, service, ledger, action.ledger_dir)
                done.append(service)
                continue
            before = (await self.service_states(host, [service]))[service]
            result = await self.transport.run(
                host, ["service", service, "restart"], timeout=action.timeout
            )
            if not result.ok:
                raise StepFailed(
                    f"{service}: {_command_failure(result)}"
                    + (f" (restarted before it: {', '.join(done)})" if done else "")
                )
            await wait_restarted(
                host,
                [service],
                {service: before},
                action.timeout,
                self.service_states,
                self.report_wait,
                "deferred",
            )
            kept += await self.remove_events(host, service, ledger, action.ledger_dir)
            done.append(service)
        again = f" ({kept} event(s) requested again since, kept)" if kept else ""
        return StepOutcome("restarted " + ", ".join(done) + again, {"restarted": done})

    async def remove_events(
        self, host: Host, service: str, ledger: LedgerFact, directory: str
    ) -> int:
        """Clear the service's events as read; returns how many changed since and stay."""
        paths = ledger.paths_of(service)
        command = ledger_removal.command(directory, ledger.digests, paths)
        result = await self.transport.run(host, command, timeout=30)
        if not result.ok:
            raise StepFailed(
                f"{service} restarted, but its events stay: {_command_failure(result)}"
            )
        removed = set(ledger_removal.parse(result.stdout.decode("utf-8", "surrogateescape")))
        return len([path for path in paths if path not in removed])

    async def clear_paid(
        self, host: Host, action: ApplyDeferred, ledger: LedgerFact, services: Sequence[str]
    ) -> None:
        """Clear the events whose service has started since they were made: `interlock check`
        on hosts with interlock, else the events of `services` (which the ledger read found
        restarted since) through the ledger's lock."""
        if action.via != "interlock":
            for service in services:
                await self.remove_events(host, service, ledger, action.ledger_dir)
            return
        result = await self.transport.run(host, action.check_argv(), timeout=PROBE_TIMEOUT)
        if result.exit_status == 127:
            raise StepFailed(f"{action.interlock[0]} is not installed on {host.name}")
        try:
            json.loads(result.stdout.decode("utf-8", "replace"))
        except json.JSONDecodeError:
            raise StepFailed(f"interlock check: {_command_failure(result)}") from None

    # --- service state ------------------------------------------------------------------------

    async def snapshot(self, host: Host, action: Snapshot) -> StepOutcome:
        services = list(action.services)
        recorded: dict[str, ServiceState] = {}
        if action.deferred:
            # The deferred services' instances come with the attempt's ledger read.
            ledger = await self.ledger(host, action.ledger_dir)
            owed = [name for name in ledger.services if name not in services]
            recorded = {name: ledger.instances[name] for name in owed}
            services += owed
        if not services:
            return StepOutcome("no services to record", {"services": [], "states": {}})
        named = [name for name in services if name not in recorded]
        states = {**recorded, **(await self.service_states(host, named) if named else {})}
        states = {name: states[name] for name in services}
        shown = ", ".join(
            f"{name} pid {state.pid}" if state.active else f"{name} not running"
            for name, state in states.items()
        )
        return StepOutcome(
            shown,
            {
                "services": services,
                "states": {name: service_state.as_dict(state) for name, state in states.items()},
            },
        )

    async def restarted(
        self, host: Host, step_id: str, action: Restarted, context: Mapping[str, dict[str, Any]]
    ) -> StepOutcome:
        recorded = context.get(action.snapshot)
        if recorded is None:
            raise StepFailed(f"no state recorded by step {action.snapshot} to compare with")
        services = recorded_services(recorded)
        before = {n: service_state.from_dict(s) for n, s in recorded.get("states", {}).items()}
        if not services:
            return StepOutcome("no services to check")
        after = await wait_restarted(
            host, services, before, action.deadline, self.service_states, self.report_wait, step_id
        )
        return StepOutcome(
            ", ".join(f"{name} pid {before[name].pid} → {after[name].pid}" for name in services),
            {"states": {name: service_state.as_dict(state) for name, state in after.items()}},
        )

    async def not_restarted(
        self, host: Host, services: Sequence[str], context: Mapping[str, dict[str, Any]]
    ) -> list[str] | None:
        """Services still running the instance the snapshot saw; None without a snapshot."""
        recorded = next(
            (data for data in context.values() if "services" in data or "setups" in data), None
        )
        if recorded is None:
            return None
        snapshot = set(recorded_services(recorded))
        before = {n: service_state.from_dict(s) for n, s in recorded.get("states", {}).items()}
        known = [name for name in services if name in snapshot and name in before]
        if len(known) != len(services):
            return None
        after = await self.service_states(host, known)
        return [name for name in known if not restarted(before[name], after[name])]

    async def service_states(self, host: Host, services: Sequence[str]) -> dict[str, ServiceState]:
        marker = new_marker()
        command = service_state.command(services, marker)
        result = await run_fact(self.transport, host, command, PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot read service state: {_command_failure(result)}")
        try:
            return service_state.parse(
                result.stdout.decode("utf-8", "surrogateescape"), marker, services
            )
        except ValueError as exc:
            raise StepFailed(f"cannot read service state: {exc}") from None

    async def ledger(self, host: Host, directory: str, *, fresh: bool = False) -> LedgerFact:
        """The host's ledger as this attempt read it; read now if not yet (or `fresh`)."""
        known = self.ledgers.get(host.name)
        if known is not None and not fresh:
            return known
        marker = new_marker()
        command = ledger_fact.command(marker, directory)
        result = await run_fact(self.transport, host, command, PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot read the ledger {directory}: {_command_failure(result)}")
        read = ledger_fact.parse(
            result.stdout.decode("utf-8", "surrogateescape"), marker, host.name
        )
        self.ledgers[host.name] = read
        return read

    # --- cleanup ------------------------------------------------------------------------------

    async def undo(self, host: Host, action: Action) -> str:
        outcome = await self.perform(host, "undo", action, {})
        return outcome.detail


def check_restart_report(result: CommandResult) -> dict[str, Any]:
    """interlock's `restart --json` report; a failure names the services and why."""
    try:
        report = json.loads(result.stdout.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        raise StepFailed(_command_failure(result)) from None
    if not isinstance(report, dict):
        raise StepFailed(f"unexpected restart report: {str(report)[:200]}")
    if not result.ok or not report.get("ok", False):
        failed = [
            f"{o.get('service')}: {o.get('detail')}"
            for o in report.get("outcomes", [])
            if not o.get("ok")
        ]
        pending = report.get("not_attempted") or []
        message = "; ".join(failed) or _command_failure(result)
        if pending:
            message += f" (not attempted: {', '.join(map(str, pending))})"
        raise StepFailed(message)
    return report


def _command_failure(result: CommandResult) -> str:
    how = (
        f"killed by signal {result.exit_signal}"
        if result.exit_status is None
        else f"exit {result.exit_status}"
    )
    tail = result.stderr.decode("utf-8", "replace").strip()[-300:]
    return f"{how}: {tail}" if tail else how
