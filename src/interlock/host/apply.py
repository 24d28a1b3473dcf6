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
from interlock.host.policy import canonical_service
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
    pending = [event for event in events if event not in cleared]
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
    return CheckReport(cleared, pending, errors, missing)


def _service_of(unit: str) -> str:
    """The service a ledger unit belongs to (`ssh.socket` → `ssh`)."""
    return unit.removesuffix(".socket") if unit_type(unit) == "socket" else unit


# What became of one unit in a restart run; only the first three leave nothing owed.
RESTARTED = "restarted"  # a new instance, verified, stayed up; its events cleared
SETTLED = "settled"  # an inactive socket whose service was restarted and verified
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
    outcomes = [
        RestartOutcome(
            refusal.unit,
            False,
            f"{refusal.reason}; `interlock clear {refusal.unit}` forgets its events",
            status=REFUSED,
        )
        for refusal in plan.refused
    ]
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
    """Restart a service (and its socket, by the unit-type rule); stop at a failure."""
    outcomes: list[RestartOutcome] = []
    socket_listens = group.socket is not None and manager.state(group.socket).active
    if group.socket is not None and socket_listens:
        if manager.state(group.service).active:
            detail = (
                f"not restartable while {group.service} runs (systemd refuses to restart a "
                f"socket whose service is active); restart both by hand, then "
                f"`interlock check`"
            )
            outcomes.append(RestartOutcome(group.socket, False, detail, status=REFUSED))
        else:
            outcomes.append(_restart_one(ledger, manager, group.socket, owed, timing))
            if outcomes[-1].status == FAILED:
                return outcomes
    if group.service_owed or (group.socket is not None and not socket_listens):
        outcomes.append(_restart_one(ledger, manager, group.service, owed, timing))
        if group.socket is not None and not socket_listens and outcomes[-1].ok:
            cleared = ledger.remove(owed[group.socket])
            detail = f"not listening: settled by the verified restart of {group.service}"
            outcomes.append(RestartOutcome(group.socket, True, detail, cleared, status=SETTLED))
    return outcomes


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
    detail = f"restarted (pid {before.pid or '-'} → {after.pid or '-'})"
    return RestartOutcome(unit, True, detail, cleared, before, after)


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
