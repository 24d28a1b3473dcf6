"""What each step does on a host, through the transport (and the load balancers).

Every step can be asked twice without harm: a resumed run re-asks a step that was started but not
recorded as finished. Work steps make that safe themselves: a restart skips services that have
already restarted since the snapshot; the deferred restarts first clear the events whose service
has started since (`interlock check`), then restart only what the ledger still owes; a command
may carry a check that says it is done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import CommandResult, Transport
from interlock.host.services.base import ServiceState
from interlock.rollout.balancer import Balancer
from interlock.rollout.gates import health_gate, restarted, soak, wait_restarted
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
from interlock.rollout.remote_ledger import (
    LedgerListing,
    listing_command,
    parse_listing,
    parse_removal,
    removal_command,
)
from interlock.rollout.service_state import (
    ServiceSetup,
    info_command,
    parse_info,
    parse_states,
    state_command,
    state_from_dict,
    state_to_dict,
)

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
            if action.via == "interlock":
                await self.clear_satisfied(host, action)
            return not (await self.read_ledger(host, action.ledger_dir)).events
        if isinstance(action, RestartServices):
            pending = await self.not_restarted(host, action.services, context)
            return None if pending is None else not pending
        return None

    async def has_work(self, host: Host, action: Action) -> bool:
        """Before a host is touched at all: is there anything for it to do?"""
        if isinstance(action, ApplyDeferred):
            if action.via == "interlock":
                await self.clear_satisfied(host, action)
            listing = await self.read_ledger(host, action.ledger_dir)
            if listing.problems and not listing.events:
                raise StepFailed("unreadable ledger: " + "; ".join(listing.problems))
            return bool(listing.events)
        if isinstance(action, RunCommand) and action.check is not None:
            result = await self.transport.run(host, action.check, timeout=PROBE_TIMEOUT)
            return not result.ok
        return True

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
        if action.via == "interlock":
            # Events whose service already restarted (an interrupted earlier try) are cleared
            # first, so nothing is restarted twice.
            await self.clear_satisfied(host, action)
            listing = await self.read_ledger(host, action.ledger_dir)
            # The timeout is per service inside interlock; the whole command gets all of them.
            bound = action.timeout * (len(listing.services) + 1) + 30
            result = await self.transport.run(host, action.argv(), timeout=bound)
            if result.exit_status == 127:
                raise StepFailed(f"{action.interlock[0]} is not installed on {host.name}")
            report = check_restart_report(result)
            names = [str(o["service"]) for o in report.get("outcomes", []) if o.get("ok")]
            return StepOutcome(
                "restarted " + ", ".join(names) if names else "nothing was owed a restart",
                {"restarted": names},
            )
        listing = await self.read_ledger(host, action.ledger_dir)
        if listing.problems:
            raise StepFailed("unreadable ledger: " + "; ".join(listing.problems))
        services = listing.services
        if not services:
            return StepOutcome("nothing was owed a restart", {"restarted": []})
        setups = await self.service_setups(host, services)
        # Restarted since the snapshot (by an interrupted earlier try): only its events remain.
        already = await self.not_restarted(host, services, context)
        done: list[str] = []
        kept = 0
        for service in services:
            if already is not None and service not in already:
                kept += await self.remove_events(host, service, listing, action.ledger_dir)
                done.append(service)
                continue
            before = (await self.service_states(host, [setups[service]]))[service]
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
                {service: setups[service]},
                {service: before},
                action.timeout,
                self.service_states,
                self.report_wait,
                "deferred",
            )
            kept += await self.remove_events(host, service, listing, action.ledger_dir)
            done.append(service)
        again = f" ({kept} event(s) requested again since, kept)" if kept else ""
        return StepOutcome("restarted " + ", ".join(done) + again, {"restarted": done})

    async def remove_events(
        self, host: Host, service: str, listing: LedgerListing, directory: str
    ) -> int:
        """Clear the service's events as listed; returns how many changed since and stay."""
        paths = listing.paths_of(service)
        command = removal_command(directory, listing, paths)
        result = await self.transport.run(host, command, timeout=30)
        if not result.ok:
            raise StepFailed(
                f"{service} restarted, but its events stay: {_command_failure(result)}"
            )
        removed = set(parse_removal(result.stdout.decode("utf-8", "surrogateescape")))
        return len([path for path in paths if path not in removed])

    async def clear_satisfied(self, host: Host, action: ApplyDeferred) -> None:
        """`interlock check`: clear the events whose service has started since they were made."""
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
        if action.deferred:
            listing = await self.read_ledger(host, action.ledger_dir)
            services += [name for name in listing.services if name not in services]
        if not services:
            return StepOutcome("no services to record", {"setups": [], "states": {}})
        setups = await self.service_setups(host, services)
        states = await self.service_states(host, list(setups.values()))
        shown = ", ".join(
            f"{name} pid {state.pid}" if state.active else f"{name} not running"
            for name, state in states.items()
        )
        return StepOutcome(
            shown,
            {
                "setups": [setup.as_dict() for setup in setups.values()],
                "states": {name: state_to_dict(state) for name, state in states.items()},
            },
        )

    async def restarted(
        self, host: Host, step_id: str, action: Restarted, context: Mapping[str, dict[str, Any]]
    ) -> StepOutcome:
        recorded = context.get(action.snapshot)
        if recorded is None:
            raise StepFailed(f"no state recorded by step {action.snapshot} to compare with")
        setups = {s["service"]: ServiceSetup.from_dict(s) for s in recorded.get("setups", [])}
        before = {name: state_from_dict(s) for name, s in recorded.get("states", {}).items()}
        if not setups:
            return StepOutcome("no services to check")
        after = await wait_restarted(
            host, setups, before, action.deadline, self.service_states, self.report_wait, step_id
        )
        return StepOutcome(
            ", ".join(f"{name} pid {before[name].pid} → {after[name].pid}" for name in setups),
            {"states": {name: state_to_dict(state) for name, state in after.items()}},
        )

    async def not_restarted(
        self, host: Host, services: Sequence[str], context: Mapping[str, dict[str, Any]]
    ) -> list[str] | None:
        """Services still running the instance the snapshot saw; None without a snapshot."""
        recorded = next((data for data in context.values() if "setups" in data), None)
        if recorded is None:
            return None
        setups = {s["service"]: ServiceSetup.from_dict(s) for s in recorded["setups"]}
        before = {name: state_from_dict(s) for name, s in recorded.get("states", {}).items()}
        known = [name for name in services if name in setups and name in before]
        if len(known) != len(services):
            return None
        after = await self.service_states(host, [setups[name] for name in known])
        return [name for name in known if not restarted(before[name], after[name])]

    async def service_setups(self, host: Host, services: Sequence[str]) -> dict[str, ServiceSetup]:
        result = await self.transport.run(host, info_command(services), timeout=PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot inspect services: {_command_failure(result)}")
        try:
            return parse_info(result.stdout.decode("utf-8", "replace"), services)
        except ValueError as exc:
            raise StepFailed(f"cannot inspect services: {exc}") from None

    async def service_states(
        self, host: Host, setups: Sequence[ServiceSetup]
    ) -> dict[str, ServiceState]:
        result = await self.transport.run(host, state_command(setups), timeout=PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot read service state: {_command_failure(result)}")
        try:
            return parse_states(result.stdout.decode("utf-8", "replace"), setups)
        except ValueError as exc:
            raise StepFailed(f"cannot read service state: {exc}") from None

    async def read_ledger(self, host: Host, directory: str) -> LedgerListing:
        result = await self.transport.run(host, listing_command(directory), timeout=PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot read the ledger {directory}: {_command_failure(result)}")
        return parse_listing(result.stdout.decode("utf-8", "surrogateescape"))

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
