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
from interlock.host.services.base import ServiceError, ServiceManager, ServiceState

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
    return CheckReport(cleared, pending, errors)


@dataclass(frozen=True)
class RestartOutcome:
    service: str
    ok: bool
    detail: str
    cleared: list[DeferredEvent] = field(default_factory=list)
    before: ServiceState | None = None
    after: ServiceState | None = None


@dataclass(frozen=True)
class RestartReport:
    outcomes: list[RestartOutcome]
    not_attempted: list[str]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes) and not self.not_attempted


def restart(
    paths: HostPaths,
    manager: ServiceManager,
    services: list[str] | None = None,
    deferred_only: bool = False,
    timeout: float = 60.0,
) -> RestartReport:
    """Restart services one at a time, verify each, and clear its events only then.

    On the first failure it stops: the failed service and the ones after it stay pending, and
    nothing that was running is left stopped by interlock (no stop-all-then-start-all).
    """
    if deferred_only == bool(services):
        raise UsageError("give either --deferred-only or service names, not both and not neither")
    with apply_lock(paths):
        return _restart(paths, manager, services, deferred_only, timeout)


def _restart(
    paths: HostPaths,
    manager: ServiceManager,
    services: list[str] | None,
    deferred_only: bool,
    timeout: float,
) -> RestartReport:
    ledger = Ledger(str(paths.ledger_dir))
    events = ledger.read().events
    if deferred_only:
        targets = sorted({event.unit for event in events})
    else:
        targets = validate_services(services or [])
    outcomes: list[RestartOutcome] = []
    for index, service in enumerate(targets):
        owed = [event for event in events if event.unit == service]
        if not manager.exists(service):
            outcomes.append(RestartOutcome(service, False, f"no such service ({manager.kind})"))
            return RestartReport(outcomes, targets[index + 1 :])
        before = manager.state(service)
        try:
            after = manager.restart_and_verify(service, timeout)
        except (ServiceError, OSError) as exc:
            outcomes.append(RestartOutcome(service, False, str(exc), before=before))
            return RestartReport(outcomes, targets[index + 1 :])
        cleared = ledger.remove(owed)
        detail = f"restarted (pid {before.pid or '-'} → {after.pid or '-'})"
        outcomes.append(RestartOutcome(service, True, detail, cleared, before, after))
    return RestartReport(outcomes, [])


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
        report = _restart(paths, manager, None, True, 60.0)
    except InterlockError as exc:
        return DeferredRunReport(ran, str(exc), None)
    return DeferredRunReport(ran, None, report)
