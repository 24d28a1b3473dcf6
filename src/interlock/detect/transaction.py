"""One apt run is one package transaction: what it upgraded owes restarts that nobody asked for.

Maintainer scripts ask policy-rc.d about some of their services, and the gate records the ones it
refuses. Others are never asked about: deb-systemd-invoke stops at the first refusal in a call
and skips the rest of its units, and many packages restart nothing. So apt's hooks bracket the
transaction:

- DPkg::Pre-Invoke (`begin`) stores every installed package's version and unpack stamp (the mtime
  of dpkg's `.list` file: it moves on a reinstall too), the ledger's current event files, and the
  time, in the state directory.
- DPkg::Post-Invoke (`finish`) compares. For every package whose version or unpack stamp changed,
  every service it ships (`/etc/init.d/*`, and `*.service` units under systemd) that runs but
  did not start during the transaction owes a restart: reason
  `Package update: <package> <old> → <new>`. A service the gate refused during the transaction
  already has its event (written or refreshed since the snapshot): that event's reason gets the
  package details. A service that already owes a restart gets the reason merged into the
  pending event. No second event is ever written: one transaction, at most one new event per
  service.

Looking at every service of every upgraded package is what catches the units deb-systemd-invoke
skipped: their package shipped them, whoever asked or not.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from interlock.detect.dpkg import installed_packages, package_files, shipped_services, unpack_stamps
from interlock.detect.recorder import merge_into, record_restart
from interlock.detect.system import System
from interlock.errors import FileFormatError
from interlock.host.atomic import write_atomic
from interlock.host.auto_restarts import REQUESTOR
from interlock.host.ledger import PACKAGE_UPDATE, Ledger
from interlock.host.services.base import ServiceError, ServiceState
from interlock.host.services.sysv import read_boot_time

SNAPSHOT_NAME = "apt-transaction.json"
INTERLOCK = f"{REQUESTOR[0]}:{REQUESTOR[1]}"
_FORMAT = 1


@dataclass(frozen=True)
class Snapshot:
    """The system as the transaction found it."""

    taken_at: float  # wall clock
    boot_clock: float  # the same instant in the clock sysv start times are read in
    packages: dict[str, tuple[str, int]]  # package → (version, unpack stamp in ns)
    ledger: dict[str, int]  # event file → its timestamp

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "taken_at": self.taken_at,
                "boot_clock": self.boot_clock,
                "packages": {name: list(value) for name, value in sorted(self.packages.items())},
                "ledger": dict(sorted(self.ledger.items())),
            },
            indent=0,
        )

    @classmethod
    def from_json(cls, text: str, path: str) -> Snapshot:
        try:
            data = json.loads(text)
            if data.get("format") != _FORMAT:
                raise ValueError("unknown format")
            packages = {
                str(name): (str(version), int(stamp))
                for name, (version, stamp) in data["packages"].items()
            }
            return cls(
                float(data["taken_at"]),
                float(data["boot_clock"]),
                packages,
                {str(path): int(stamp) for path, stamp in data["ledger"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FileFormatError(path, f"not a transaction snapshot: {exc}") from None


def boot_clock() -> float:
    """Now, as boot time plus time since boot: /proc start times use the same two terms."""
    return read_boot_time() + time.clock_gettime(time.CLOCK_BOOTTIME)


def package_state(admin_dir: str) -> dict[str, tuple[str, int]]:
    installed = installed_packages(admin_dir)
    stamps = unpack_stamps(admin_dir, installed)
    return {name: (package.version, stamps.get(name, 0)) for name, package in installed.items()}


def take_snapshot(system: System) -> Snapshot:
    events = {
        event.path: event.timestamp
        for event in Ledger(str(system.paths.ledger_dir)).read().events
        if event.path is not None
    }
    return Snapshot(time.time(), boot_clock(), package_state(system.dpkg_dir), events)


class SnapshotStore:
    def __init__(self, system: System) -> None:
        self.path = system.paths.state_dir / SNAPSHOT_NAME

    def load(self) -> Snapshot | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return Snapshot.from_json(text, str(self.path))

    def save(self, snapshot: Snapshot) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        write_atomic(str(self.path), snapshot.to_json() + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def begin(system: System) -> tuple[Snapshot, bool]:
    """Pre-Invoke: store the snapshot; keep an older one whose transaction never finished.

    Returns (snapshot, kept): an apt run that died before Post-Invoke left its snapshot behind,
    and its changes are still unreconciled, so they are reconciled with this one.
    """
    store = SnapshotStore(system)
    try:
        existing = store.load()
    except FileFormatError:
        existing = None
    if existing is not None:
        return existing, True
    snapshot = take_snapshot(system)
    store.save(snapshot)
    return snapshot, False


@dataclass(frozen=True)
class PackageChange:
    name: str
    old: str
    new: str

    def describe(self) -> str:
        return f"{self.name} {self.old} → {self.new}"


def changed_packages(
    before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]
) -> list[PackageChange]:
    """Pure: packages present before and after whose version or unpack stamp moved."""
    changes = []
    for name in sorted(before.keys() & after.keys()):
        (old, old_stamp), (new, new_stamp) = before[name], after[name]
        if old != new or old_stamp != new_stamp:
            changes.append(PackageChange(name, old, new))
    return changes


def package_update_reason(changes: list[PackageChange]) -> str:
    return f"{PACKAGE_UPDATE}: {', '.join(sorted(change.describe() for change in changes))}"


def restarted_during(state: ServiceState, snapshot: Snapshot, systemd: bool) -> bool:
    """Did this run of the service start after the snapshot?"""
    if not state.active or state.started_at is None:
        return False
    if systemd:
        # systemd's `@<epoch>` start time is truncated to the second: compare whole seconds.
        return state.started_at >= math.floor(snapshot.taken_at)
    return state.started_at > snapshot.boot_clock


@dataclass(frozen=True)
class ServiceOutcome:
    service: str
    reason: str
    outcome: str

    def as_dict(self) -> dict[str, str]:
        return {"service": self.service, "reason": self.reason, "outcome": self.outcome}


@dataclass(frozen=True)
class ReconcileReport:
    changes: list[PackageChange]
    services: list[ServiceOutcome]
    had_snapshot: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "snapshot": self.had_snapshot,
            "packages": [{"package": c.name, "old": c.old, "new": c.new} for c in self.changes],
            "services": [outcome.as_dict() for outcome in self.services],
        }


def services_of_changes(
    system: System, changes: list[PackageChange]
) -> dict[str, list[PackageChange]]:
    """Service → the changed packages that ship it (only services this host can run)."""
    owed: dict[str, list[PackageChange]] = {}
    for change in changes:
        shipped = shipped_services(package_files(system.dpkg_dir, change.name))
        for service in shipped.names(system.systemd):
            owed.setdefault(service, []).append(change)
    if not system.systemd:
        manager = system.manager()
        owed = {service: c for service, c in owed.items() if manager.exists(service)}
    return dict(sorted(owed.items()))


def reconcile(system: System, snapshot: Snapshot) -> ReconcileReport:
    """Record what the changed packages' services owe; never a second event for a service."""
    changes = changed_packages(snapshot.packages, package_state(system.dpkg_dir))
    ledger = Ledger(str(system.paths.ledger_dir))
    manager = system.manager()
    events = ledger.read().events
    outcomes = []
    for service, service_changes in services_of_changes(system, changes).items():
        reason = package_update_reason(service_changes)
        pending = [event for event in events if event.unit == service and event.path]
        # Written or refreshed by the gate during the transaction: the refused restarts.
        refused = [e for e in pending if snapshot.ledger.get(str(e.path)) != e.timestamp]
        if refused:
            for event in refused:
                merge_into(ledger, str(event.path), reason)
            outcomes.append(ServiceOutcome(service, reason, "refused during the transaction"))
            continue
        try:
            state = manager.state(service)
        except (ServiceError, OSError) as exc:
            recorded = record_restart(ledger, service, reason)
            outcomes.append(ServiceOutcome(service, reason, f"{recorded.outcome} ({exc})"))
            continue
        if not state.active:
            outcomes.append(ServiceOutcome(service, reason, "not running"))
        elif restarted_during(state, snapshot, system.systemd):
            outcomes.append(ServiceOutcome(service, reason, "restarted"))
        elif pending and not any(e.requestor == INTERLOCK for e in pending):
            # It already owes a restart to someone else: say why once more, in that event.
            merge_into(ledger, str(pending[-1].path), reason)
            outcomes.append(ServiceOutcome(service, reason, "merged"))
        else:
            recorded = record_restart(ledger, service, reason)
            outcomes.append(ServiceOutcome(service, reason, recorded.outcome))
    return ReconcileReport(changes, outcomes, True)


def finish(system: System) -> ReconcileReport:
    """Post-Invoke: reconcile against the stored snapshot, then forget it."""
    store = SnapshotStore(system)
    snapshot = store.load()
    if snapshot is None:
        return ReconcileReport([], [], False)
    report = reconcile(system, snapshot)
    store.clear()
    return report
