"""Gates: the conditions a rollout waits for before a batch and after each host's action.

Pre-gates (before a batch): every probe passes in the same round, polled until a timeout; a
RabbitMQ backlog or a firing alert holds the batch back rather than failing it at once.
Post-gates (per host): the services really restarted (a new InvocationID, pid or start time, and
active), probes that pass N rounds in a row by a deadline, and a soak after which the probes must
still pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from interlock.fleet.inventory import Host
from interlock.host.services.base import ServiceState
from interlock.rollout.outcome import StepFailed, StepOutcome, WaitReporter
from interlock.rollout.plan import CommandProbe, Gate, Plan, PreGates, Probe, Soak
from interlock.rollout.probes import ProbeResult, ProbeRunner

RESTART_POLL = 0.2

ServiceStates = Callable[[Host, Sequence[str]], Awaitable[dict[str, ServiceState]]]
# (what is waited for): reported while a pre-gate holds a batch back.
BatchWaitReporter = Callable[[str], None]


class GateTimeout(StepFailed):
    """A gate did not open in time."""


async def ask_all(
    probes: ProbeRunner, items: Sequence[Probe], host: Host | None, plan: Plan | None = None
) -> list[ProbeResult]:
    """Ask every probe at once; a pre-gate command runs on its named host or on this machine."""

    async def one(probe: Probe) -> ProbeResult:
        target = host
        if isinstance(probe, CommandProbe) and probe.on is not None and plan is not None:
            target = plan.gate_host(probe.on)
        return await probes.ask(probe, target)

    return list(await asyncio.gather(*(one(probe) for probe in items)))


async def wait_for_pre_gates(
    gates: PreGates, probes: ProbeRunner, plan: Plan, report: BatchWaitReporter
) -> str:
    """Return once every pre-gate passes together; GateTimeout after `gates.timeout`."""
    if not gates.probes:
        return "no pre-gates"
    start = time.monotonic()
    end = start + gates.timeout
    while True:
        results = await ask_all(probes, gates.probes, None, plan)
        failing = [r.detail for r in results if not r.ok]
        if not failing:
            waited = time.monotonic() - start
            return "; ".join(r.detail for r in results) + (
                f" (after waiting {waited:.1f} s)" if waited >= gates.interval else ""
            )
        if time.monotonic() >= end:
            raise GateTimeout(
                f"pre-gates still closed after {gates.timeout:g} s: " + "; ".join(failing)
            )
        report("; ".join(failing))
        await asyncio.sleep(min(gates.interval, max(0.0, end - time.monotonic())))


async def health_gate(
    host: Host, step_id: str, gate: Gate, probes: ProbeRunner, report: WaitReporter
) -> StepOutcome:
    """All probes pass `gate.passes` rounds in a row; a failed round starts the count over."""
    end = time.monotonic() + gate.deadline
    streak = 0
    rounds = 0
    while True:
        rounds += 1
        results = await ask_all(probes, gate.probes, host)
        failing = [r.detail for r in results if not r.ok]
        streak = 0 if failing else streak + 1
        if streak >= gate.passes:
            return StepOutcome(f"passed {streak} round(s) in a row after {rounds}")
        if time.monotonic() >= end:
            last = "; ".join(failing) if failing else f"only {streak} passes in a row"
            raise GateTimeout(f"not healthy within {gate.deadline:g} s: {last}")
        report(host, step_id, "; ".join(failing) if failing else f"passed {streak}/{gate.passes}")
        await asyncio.sleep(min(gate.interval, max(0.0, end - time.monotonic())))


async def soak(
    host: Host, step_id: str, action: Soak, probes: ProbeRunner, report: WaitReporter
) -> StepOutcome:
    report(host, step_id, f"soaking {action.seconds:g} s")
    await asyncio.sleep(action.seconds)
    if not action.probes:
        return StepOutcome(f"soaked {action.seconds:g} s")
    failing = [r.detail for r in await ask_all(probes, action.probes, host) if not r.ok]
    if failing:
        raise StepFailed(f"unhealthy after soaking {action.seconds:g} s: " + "; ".join(failing))
    return StepOutcome(f"soaked {action.seconds:g} s, still healthy")


async def wait_restarted(
    host: Host,
    services: Sequence[str],
    before: Mapping[str, ServiceState],
    deadline: float,
    states: ServiceStates,
    report: WaitReporter,
    step_id: str = "restarted",
) -> dict[str, ServiceState]:
    """Until every service runs as a new instance (and is active), or GateTimeout."""
    end = time.monotonic() + deadline
    while True:
        after = await states(host, services)
        waiting = [name for name in services if not restarted(before.get(name), after[name])]
        if not waiting:
            return after
        detail = "; ".join(
            f"{name} {'still the same process' if after[name].active else 'not running'}"
            for name in waiting
        )
        if time.monotonic() >= end:
            raise GateTimeout(f"not restarted within {deadline:g} s: {detail}")
        report(host, step_id, detail)
        await asyncio.sleep(RESTART_POLL)


def restarted(before: ServiceState | None, after: ServiceState) -> bool:
    """Active now and a different run than before (a service that was down counts once up)."""
    if before is None:
        return after.active
    return after.differs_from(before)


def recorded_services(recorded: Mapping[str, Any]) -> list[str]:
    """The services a snapshot recorded (journals before the ledger fact kept `setups`)."""
    if "services" in recorded:
        return [str(name) for name in recorded["services"]]
    return [str(setup["service"]) for setup in recorded.get("setups", [])]
