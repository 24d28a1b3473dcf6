"""Acting on the ledger: clear what is satisfied, restart what is owed, run deferred hooks.

Every operation reads the ledger, acts, and removes only the events it has proof for: a service
that really started after the event (check), or a restart it performed and verified (restart).
Events written meanwhile survive, because removal re-reads each file under the ledger lock.

`check`, `restart` and `run-deferred-hooks` also hold one host-wide apply lock for their whole
run: a `check` that starts while an orphaned `restart` (its orchestrator killed) is between
stopping and starting a service waits for it, instead of judging a half-restarted service and
restarting it a second time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from interlock.errors import InterlockError, UsageError
from interlock.host.atomic import FileLock
from interlock.host.auto_restarts import validate_services
from interlock.host.hooks import DeferredHook, HookFailed, HookStore, run_hook_command
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.paths import HostPaths
from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.host.services.base import (
    DEFAULT_SETTLE,
    ServiceError,
    ServiceManager,
    ServiceState,
)
from interlock.host.services.units import RestartGroup, plan_restarts, unit_type

APPLY_LOCK = ".interlock-apply.lock"


def apply_lock(paths: HostPaths) -> FileLock:
    """The lock every ledger-applying operation on this host holds from start to end."""
    paths.ledger_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    return FileLock(os.path.join(paths.ledger_dir, APPLY_LOCK))


@dataclass(frozen=True)
class CheckReport:
    cleared: list[DeferredEvent]
    pending: list[DeferredEvent]
    errors: list[str]
    missing: list[str] = field(default_factory=list)  # pending units no such service backs
    settled: list[DeferredEvent] = field(default_factory=list)  # of dormant sockets and targets


def check(paths: HostPaths, manager: ServiceManager) -> CheckReport:
    """Clear the events whose service has started since (what the charms' update-status does)."""
    with apply_lock(paths):
        return _check(paths, manager)


def _check(paths: HostPaths, manager: ServiceManager) -> CheckReport:
    ledger = Ledger(str(paths.ledger_dir))
    events = ledger.read().events
    states: dict[str, ServiceState] = {}
    errors = []
    for unit in sorted({event.unit for event in events}):
        try:
            states[unit] = manager.state(unit)
        except (ServiceError, OSError) as exc:
            errors.append(f"{unit}: {exc}")
    satisfied = [
        event
        for event in events
        if event.unit in states and states[event.unit].started_after(event.timestamp)
    ]
    cleared = ledger.remove(satisfied)
    # The unit-type rule (interlock.host.services.units): a dormant socket or target owes nothing.
    dormant = set()
    for unit in sorted({event.unit for event in events if event not in cleared}):
        if unit_type(unit) != "service" and is_valid_service_name(unit) and "/" not in unit:
            try:
                if manager.dormant(unit):
                    dormant.add(unit)
            except (ServiceError, OSError) as exc:
                errors.append(f"{unit}: {exc}")
    settled = ledger.remove([e for e in events if e.unit in dormant and e not in cleared])
    pending = [event for event in events if event not in cleared and event not in settled]
    # A purged service never starts again: say so, or its events look merely late forever.
    missing = []
    for unit in sorted({event.unit for event in pending}):
        if unit_type(unit) not in ("service", "socket"):
            continue
        try:
            if not states[unit].active and not manager.exists(_service_of(unit)):
                missing.append(unit)
        except (KeyError, ServiceError, OSError):
            continue  # its state error is already reported
    return CheckReport(cleared, pending, errors, missing, settled)


def _service_of(unit: str) -> str:
    """The service a ledger unit belongs to (`ssh.socket` → `ssh`)."""
    return unit.removesuffix(".socket") if unit_type(unit) == "socket" else unit


# What became of one unit in a restart run; only the first three leave nothing owed.
RESTARTED = "restarted"  # a new instance, verified, stayed up; its events cleared
SETTLED = "settled"  # a dormant socket or target: nothing to do, its events cleared
PRUNED = "pruned"  # no such service on this host; its events cleared on request
FAILED = "failed"
MISSING = "missing"  # no such service on this host; its events stay
REFUSED = "not-restartable"


@dataclass(frozen=True)
class RestartOutcome:
    service: str
    ok: bool
    detail: str
    cleared: list[DeferredEvent] = field(default_factory=list)
    before: ServiceState | None = None
    after: ServiceState | None = None
    status: str = RESTARTED


@dataclass(frozen=True)
class RestartReport:
    outcomes: list[RestartOutcome]
    not_attempted: list[str]

    @property
    def ok(self) -> bool:
        """Nothing is left owed: every unit was restarted, settled or pruned."""
        return all(outcome.ok for outcome in self.outcomes) and not self.not_attempted


@dataclass(frozen=True)
class Timing:
    timeout: float = 60.0
    settle: float = DEFAULT_SETTLE


def restart(
    paths: HostPaths,
    manager: ServiceManager,
    services: list[str] | None = None,
    deferred_only: bool = False,
    timeout: float = 60.0,
    settle: float = DEFAULT_SETTLE,
    prune_missing: bool = False,
) -> RestartReport:
    """Restart services one at a time, verify each, and clear its events only then.

    What may be restarted follows the unit-type rule (interlock.host.services.units): other
    unit types are reported as not restartable and keep their events. A service that does not
    exist on this host is reported missing and skipped (with `prune_missing`, its events are
    cleared); the others still run. On the first failed restart it stops: the failed service
    and the ones after it stay pending, and nothing that was running is left stopped by
    interlock (no stop-all-then-start-all).
    """
    if deferred_only == bool(services):
        raise UsageError("give either --deferred-only or service names, not both and not neither")
    if settle < 0 or timeout <= 0:
        raise UsageError("--timeout must be positive and --settle not negative")
    if services:
        validate_services(services)  # a bad name refuses the whole command before anything runs
    with apply_lock(paths):
        return _restart(
            paths, manager, services, deferred_only, Timing(timeout, settle), prune_missing
        )


def _restart(
    paths: HostPaths,
    manager: ServiceManager,
    services: list[str] | None,
    deferred_only: bool,
    timing: Timing,
    prune_missing: bool,
) -> RestartReport:
    ledger = Ledger(str(paths.ledger_dir))
    events = ledger.read().events
    if deferred_only:
        plan = plan_restarts(event.unit for event in events)
    else:
        plan = plan_restarts(canonical_service(name) for name in services or [])
    outcomes = []
    for refusal in plan.refused:
        if refusal.settles_when_dormant and manager.dormant(refusal.unit):
            outcomes.append(_settle_dormant(ledger, refusal.unit, events))
            continue
        detail = f"{refusal.reason}; `interlock clear {refusal.unit}` forgets its events"
        outcomes.append(RestartOutcome(refusal.unit, False, detail, status=REFUSED))
    for index, group in enumerate(plan.groups):
        owed = {unit: [e for e in events if e.unit == unit] for unit in group.units}
        if not manager.exists(group.service):
            outcomes += _missing(ledger, manager, group.units, owed, prune_missing)
            continue
        done = _restart_group(ledger, manager, group, owed, timing)
        outcomes += done
        if any(outcome.status == FAILED for outcome in done):
            return RestartReport(outcomes, [g.service for g in plan.groups[index + 1 :]])
    return RestartReport(outcomes, [])


def _missing(
    ledger: Ledger,
    manager: ServiceManager,
    units: tuple[str, ...],
    owed: dict[str, list[DeferredEvent]],
    prune: bool,
) -> list[RestartOutcome]:
    outcomes = []
    for unit in units:
        if prune:
            cleared = ledger.remove(owed[unit])
            detail = f"no such service ({manager.kind}): its {len(cleared)} event(s) pruned"
            outcomes.append(RestartOutcome(unit, True, detail, cleared, status=PRUNED))
        else:
            detail = (
                f"no such service ({manager.kind}): skipped; --prune-missing or "
                f"`interlock clear {unit}` forgets its events"
            )
            outcomes.append(RestartOutcome(unit, False, detail, status=MISSING))
    return outcomes


def _restart_group(
    ledger: Ledger,
    manager: ServiceManager,
    group: RestartGroup,
    owed: dict[str, list[DeferredEvent]],
    timing: Timing,
) -> list[RestartOutcome]:
    """A socket and its service by the unit-type rule: a dormant socket is settled, any other is
    restarted with its running services; the service restarts on its own when owed and not
    already restarted with its socket. Stops at a failure."""
    outcomes: list[RestartOutcome] = []
    if group.socket is not None:
        if manager.dormant(group.socket):
            outcomes.append(_settle_dormant(ledger, group.socket, owed[group.socket]))
        else:
            service_before = manager.state(group.service)
            outcomes.append(_restart_one(ledger, manager, group.socket, owed, timing))
            if outcomes[-1].status == FAILED:
                return outcomes
            service_after = manager.state(group.service)
            if group.service_owed and service_after.differs_from(service_before):
                cleared = ledger.remove(owed[group.service])
                detail = (
                    f"restarted with {group.socket} ({_instances(service_before, service_after)})"
                )
                outcomes.append(
                    RestartOutcome(
                        group.service, True, detail, cleared, service_before, service_after
                    )
                )
                return outcomes
    if group.service_owed:
        outcomes.append(_restart_one(ledger, manager, group.service, owed, timing))
    return outcomes


def _settle_dormant(ledger: Ledger, unit: str, events: list[DeferredEvent]) -> RestartOutcome:
    cleared = ledger.remove([event for event in events if event.unit == unit])
    detail = (
        "neither active nor enabled: a package's restart of it does nothing "
        "(deb-systemd-invoke skips it), so it is settled and not started"
    )
    return RestartOutcome(unit, True, detail, cleared, status=SETTLED)


def _restart_one(
    ledger: Ledger,
    manager: ServiceManager,
    unit: str,
    owed: dict[str, list[DeferredEvent]],
    timing: Timing,
) -> RestartOutcome:
    before = manager.state(unit)
    try:
        after = manager.restart_and_verify(unit, timing.timeout, timing.settle)
    except (ServiceError, OSError) as exc:
        return RestartOutcome(unit, False, str(exc), before=before, status=FAILED)
    cleared = ledger.remove(owed.get(unit, []))
    detail = f"restarted ({_instances(before, after)})"
    return RestartOutcome(unit, True, detail, cleared, before, after)


def _instances(before: ServiceState, after: ServiceState) -> str:
    """Old and new instance: the pids, or for a unit without a process (a socket) the
    InvocationIDs."""
    if before.pid is None and after.pid is None and after.invocation:
        return f"invocation {(before.invocation or '-')[:8]} → {after.invocation[:8]}"
    return f"pid {before.pid or '-'} → {after.pid or '-'}"


def clear(paths: HostPaths, services: list[str], everything: bool) -> tuple[int, int]:
    """Forget deferred events (of `services`, or all) and, with `everything`, deferred hooks."""
    if everything == bool(services):
        raise UsageError("give service names or --all")
    ledger = Ledger(str(paths.ledger_dir))
    events = ledger.read().events
    wanted = set(validate_services(services)) if services else None
    chosen = [event for event in events if wanted is None or event.unit in wanted]
    removed = ledger.remove(chosen)
    hooks_removed = 0
    if everything:
        store = HookStore(paths.state_dir)
        hooks, _ = store.read()
        store.remove(hooks)
        hooks_removed = len(hooks)
    return len(removed), hooks_removed


@dataclass(frozen=True)
class DeferredRunReport:
    hooks_run: list[DeferredHook]
    hook_error: str | None
    restarts: RestartReport | None


def run_deferred_hooks(paths: HostPaths, manager: ServiceManager) -> DeferredRunReport:
    """Run the recorded hooks in order, then apply the deferred restarts (as the charms do)."""
    with apply_lock(paths):
        return _run_deferred_hooks(paths, manager)


def _run_deferred_hooks(paths: HostPaths, manager: ServiceManager) -> DeferredRunReport:
    store = HookStore(paths.state_dir)
    hooks, _ = store.read()
    ran: list[DeferredHook] = []
    for hook in hooks:
        try:
            run_hook_command(hook)
        except HookFailed as exc:
            return DeferredRunReport(ran, str(exc), None)
        store.remove([hook])
        ran.append(hook)
    if not Ledger(str(paths.ledger_dir)).read().events:
        return DeferredRunReport(ran, None, RestartReport([], []))
    try:
        report = _restart(paths, manager, None, True, Timing(), False)
    except InterlockError as exc:
        return DeferredRunReport(ran, str(exc), None)
    return DeferredRunReport(ran, None, report)
