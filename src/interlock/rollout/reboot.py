"""Rolling reboots: the per-host plan, and what its reboot steps do on a host.

Per host: record the services' state and the boot (boot_id, PID 1's start, btime; whether a
reboot is needed), drain, reboot (or, on a host that needs none, its deferred restarts), the
services that ran before run again as new instances, `interlock check` clears every deferred
restart the reboot paid, the health gates, the soak, enable.

A reboot is never done twice: the reboot step first reads the boot again and counts a host whose
boot already changed since it was recorded as rebooted, so a resumed run (the orchestrator killed
while it waited) or a retried host (it came back too late) goes on from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interlock.errors import UsageError
from interlock.facts import service_state
from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import Transport
from interlock.fleet.transport.errors import TransportError
from interlock.host.reboot import (
    BootIdentity,
    RebootNeed,
    identity_argv,
    need_argv,
    parse_identity,
    parse_need,
)
from interlock.host.services.base import ServiceState
from interlock.rollout.gates import recorded_services, wait_restarted
from interlock.rollout.outcome import StepFailed, StepOutcome
from interlock.rollout.plan import (
    ApplyDeferred,
    Drain,
    Enable,
    HostPlan,
    RunCommand,
    Snapshot,
    Step,
)
from interlock.rollout.reboot_steps import ALWAYS, BootRecord, CameBack, Reboot

if TYPE_CHECKING:
    from interlock.rollout.actions import HostActions
    from interlock.rollout.spec import RolloutSpec

SNAPSHOT = "snapshot"
BOOT = "boot"
PROBE_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0  # the reboot command itself; the wait for the new boot is the deadline
POLL = 1.0
NEED_MARKER = "@@interlock-reboot"

# --- the plan -----------------------------------------------------------------------------------


def reboot_host_plan(spec: RolloutSpec, host: Host) -> HostPlan:
    from interlock.rollout.planner import closing_steps

    if spec.transport == "local":
        raise UsageError(
            "reboots go over SSH: with transport local the reboot would be this machine's"
        )
    action = spec.action
    otherwise = ApplyDeferred(action.via, spec.interlock, spec.ledger_dir, action.timeout)
    reboot = Reboot(
        argv=action.reboot_argv,
        deadline=action.reboot_timeout,
        when=action.reboot or ALWAYS,
        otherwise=None if action.reboot == ALWAYS else otherwise,
    )
    post = spec.post_gates
    steps: list[Step] = []
    if post.restarted:
        steps.append(Step(SNAPSHOT, Snapshot((), True, spec.ledger_dir), sticky=True))
    steps.append(Step(BOOT, BootRecord(), sticky=True))
    drain = spec.drain
    if drain.enabled:
        keep = drain.on_failure == "leave-drained"
        steps.append(
            Step(
                "drain",
                Drain(host.address, drain.port, drain.timeout, drain.on_timeout),
                undo=None if keep else Enable(host.address, drain.port, drain.timeout),
                left_on_failure="its servers stay drained (drain.on_failure: leave-drained)"
                if keep
                else None,
            )
        )
    steps.append(Step(reboot.kind, reboot, sticky=True))
    if post.restarted:
        steps.append(Step("came-back", CameBack(SNAPSHOT, post.deadline)))
    check = RunCommand((*spec.interlock, "check", "--json"), ok_exits=(0, 1), timeout=60.0)
    steps.append(Step("ledger", check, title="clear the deferred restarts paid (interlock check)"))
    steps.extend(closing_steps(spec, host))
    return HostPlan(host, tuple(steps), reboot.kind)


# --- probes -------------------------------------------------------------------------------------


async def boot_identity(transport: Transport, host: Host) -> BootIdentity:
    result = await transport.run(host, identity_argv(), timeout=PROBE_TIMEOUT)
    try:
        return parse_identity(result.check().stdout.decode("utf-8", "replace"))
    except ValueError as exc:
        raise StepFailed(f"cannot read the boot: {exc}") from None


async def reboot_need(transport: Transport, host: Host) -> RebootNeed:
    result = await transport.run(host, need_argv(NEED_MARKER), timeout=PROBE_TIMEOUT)
    try:
        return parse_need(result.check().stdout.decode("utf-8", "replace"), NEED_MARKER)
    except ValueError as exc:
        raise StepFailed(f"cannot tell whether a reboot is needed: {exc}") from None


async def answering_identity(
    actions: HostActions, host: Host, step: str, deadline: float
) -> BootIdentity:
    """The boot identity once the host answers again (it may be rebooting), within `deadline`."""
    end = time.monotonic() + deadline
    while True:
        try:
            return await boot_identity(actions.transport, host)
        except TransportError as exc:
            if time.monotonic() >= end:
                raise StepFailed(f"no answer within {deadline:g} s: {exc.reason}") from None
            actions.report_wait(host, step, f"waiting for the host to answer: {exc.reason}")
        await asyncio.sleep(POLL)


# --- the steps ----------------------------------------------------------------------------------


async def record_boot(actions: HostActions, host: Host) -> StepOutcome:
    identity = await boot_identity(actions.transport, host)
    need = await reboot_need(actions.transport, host)
    said = need.message() or "no reboot needed"
    return StepOutcome(
        f"{said}; boot {identity.boot_id}, PID 1 started at tick {identity.init_start}",
        {"boot": identity.as_dict(), "reboot": need.as_dict()},
    )


def _recorded(context: Mapping[str, dict[str, Any]]) -> tuple[BootIdentity, bool]:
    recorded = context.get(BOOT)
    if recorded is None or "boot" not in recorded:
        raise StepFailed(f"no boot recorded by step {BOOT} to compare with")
    return BootIdentity.from_dict(recorded["boot"]), bool(recorded["reboot"]["needed"])


async def reboot(
    actions: HostActions,
    host: Host,
    step_id: str,
    action: Reboot,
    context: Mapping[str, dict[str, Any]],
) -> StepOutcome:
    before, needed = _recorded(context)
    if action.when != ALWAYS and not needed:
        if action.otherwise is None:
            return StepOutcome("no reboot needed", {"rebooted": False})
        done = await actions.apply_deferred(host, action.otherwise, context)
        return StepOutcome(f"no reboot needed: {done.detail}", {**done.data, "rebooted": False})
    current = await answering_identity(actions, host, step_id, action.deadline)
    if current.is_new_boot_since(before):
        return _rebooted(current, "found rebooted already")
    started = time.monotonic()
    try:
        result = await actions.transport.run(host, action.argv, timeout=COMMAND_TIMEOUT)
    except TransportError as exc:
        # The connection dies with the host: what a reboot looks like from here.
        actions.report_wait(host, step_id, f"the host went away: {exc.reason}")
    else:
        if result.exit_status not in (0, None):
            stderr = result.stderr.decode("utf-8", "replace").strip()[-300:]
            raise StepFailed(f"the reboot command exited {result.exit_status}: {stderr}")
    await actions.transport.disconnect(host)
    end = started + action.deadline
    while True:
        try:
            current = await boot_identity(actions.transport, host)
            if current.is_new_boot_since(before):
                return _rebooted(current, f"back after {time.monotonic() - started:.1f} s")
            detail = "still the same boot"
        except TransportError as exc:
            detail = f"down: {exc.reason}"
        if time.monotonic() >= end:
            raise StepFailed(f"no new boot within {action.deadline:g} s ({detail})")
        actions.report_wait(host, step_id, detail)
        await asyncio.sleep(POLL)


def _change(before: ServiceState, after: ServiceState) -> str:
    if before.invocation and after.invocation:
        return f"invocation {before.invocation[:8]} → {after.invocation[:8]}"
    # A PID namespace starts over at each boot: the same pid may well be a new process.
    same = " (a new process)" if before.pid == after.pid else ""
    return f"pid {before.pid} → {after.pid}{same}"


def _rebooted(current: BootIdentity, how: str) -> StepOutcome:
    return StepOutcome(
        f"rebooted, {how}: boot {current.boot_id}, PID 1 started at tick {current.init_start}",
        {"rebooted": True, "boot": current.as_dict()},
    )


async def is_rebooted(
    actions: HostActions, host: Host, action: Reboot, context: Mapping[str, dict[str, Any]]
) -> bool | None:
    """For a reboot step found started: did the host reboot since its boot was recorded?"""
    if BOOT not in context:
        return None
    before, needed = _recorded(context)
    if action.when != ALWAYS and not needed:
        return (
            None
            if action.otherwise is None
            else await actions.is_done(host, action.otherwise, context)
        )
    current = await answering_identity(actions, host, "reboot", action.deadline)
    return current.is_new_boot_since(before)


async def has_reboot_work(actions: HostActions, host: Host, action: Reboot) -> bool:
    if action.when == ALWAYS:
        return True
    if (await reboot_need(actions.transport, host)).needed:
        return True
    return action.otherwise is not None and await actions.has_work(host, action.otherwise)


async def came_back(
    actions: HostActions,
    host: Host,
    step_id: str,
    action: CameBack,
    context: Mapping[str, dict[str, Any]],
) -> StepOutcome:
    recorded = context.get(action.snapshot)
    if recorded is None:
        raise StepFailed(f"no state recorded by step {action.snapshot} to compare with")
    services = recorded_services(recorded)
    before = {n: service_state.from_dict(s) for n, s in recorded.get("states", {}).items()}
    running = [name for name in services if name in before and before[name].active]
    idle = sorted(name for name in services if name not in running)
    note = f" (not running before, not expected: {', '.join(idle)})" if idle else ""
    if not running:
        return StepOutcome("no recorded service ran before" + note)
    after = await wait_restarted(
        host, running, before, action.deadline, actions.service_states, actions.report_wait, step_id
    )
    return StepOutcome(
        ", ".join(f"{name} {_change(before[name], after[name])}" for name in running) + note,
        {"states": {name: service_state.as_dict(state) for name, state in after.items()}},
    )
