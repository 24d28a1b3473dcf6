"""Findings become deferred restarts in the ledger: one event per service, reasons merged.

Detection records as requestor `interlock:interlock`, action `restart`. The ledger already keeps
one pending event per (requestor, service, action); when a service already owes a restart, the
new reason is merged into the pending event's reason instead of being dropped, so an operator
reads every cause: `File(s) changed: /etc/a.conf; Package update: nova-common 1 → 2`.
Reasons with the same head merge their items: `File(s) changed: a` + `File(s) changed: b` →
`File(s) changed: a, b` (sorted, de-duplicated, as the charms write them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from interlock.errors import FileFormatError, InterlockError
from interlock.host.atomic import write_atomic
from interlock.host.auto_restarts import REQUESTOR
from interlock.host.ledger import DeferredEvent, Ledger, read_event, render_event

RESTART = "restart"
FILES_CHANGED = "File(s) changed"
_PART_SEPARATOR = "; "
_ITEM_SEPARATOR = ", "
_ATTEMPTS = 20


def file_changed_reason(paths: Iterable[str]) -> str:
    return f"{FILES_CHANGED}: {_ITEM_SEPARATOR.join(sorted(set(paths)))}"


def _parts(reason: str) -> list[tuple[str, list[str]]]:
    parts = []
    for part in reason.split(_PART_SEPARATOR):
        if not part:
            continue
        head, sep, rest = part.partition(": ")
        parts.append((head, rest.split(_ITEM_SEPARATOR) if sep and rest else []))
    return parts


def merge_reasons(old: str, new: str) -> str:
    """`old` extended by what `new` adds; parts with the same head merge their items."""
    merged = _parts(old)
    for head, items in _parts(new):
        for index, (existing_head, existing_items) in enumerate(merged):
            if existing_head == head:
                merged[index] = (head, sorted(set(existing_items) | set(items)))
                break
        else:
            merged.append((head, sorted(set(items))))
    return _PART_SEPARATOR.join(
        f"{head}: {_ITEM_SEPARATOR.join(items)}" if items else head for head, items in merged
    )


def merge_into(ledger: Ledger, path: str, reason: str) -> DeferredEvent | None:
    """Merge `reason` into the event file at `path` as it is now; None if the file is gone."""
    with ledger.lock():
        return _merge_locked(path, reason, None)


def _merge_locked(path: str, reason: str, timestamp: int | None) -> DeferredEvent | None:
    try:
        current = read_event(path)
    except (OSError, FileFormatError):
        return None
    updated = current.replace(
        reason=merge_reasons(current.reason, reason),
        timestamp=current.timestamp if timestamp is None else max(current.timestamp, timestamp),
    )
    if updated != current:
        write_atomic(path, render_event(updated))
    return updated


@dataclass(frozen=True)
class Recorded:
    """What recording did: a new event, a merged reason, or nothing new (already pending)."""

    service: str
    event: DeferredEvent
    created: bool
    merged: bool

    @property
    def outcome(self) -> str:
        return "recorded" if self.created else "merged" if self.merged else "already pending"


def record_restart(
    ledger: Ledger, service: str, reason: str, timestamp: int | None = None
) -> Recorded:
    """Record that `service` needs a restart because of `reason`; merge into a pending event.

    The merge reads and rewrites the pending event under the ledger's lock, so concurrent
    recorders never lose a reason. Only creating a new file goes through `Ledger.record`; if
    another recorder created the event first, the loop merges into that one.
    """
    when = int(time.time()) if timestamp is None else timestamp
    event = DeferredEvent(service, RESTART, reason, when, REQUESTOR[1], REQUESTOR[0])
    for _ in range(_ATTEMPTS):
        with ledger.lock():
            pending = next(
                (e for e in ledger.read().events if e.same_deferral(event) and e.path), None
            )
            if pending is not None and pending.path is not None:
                updated = _merge_locked(pending.path, reason, when)
                if updated is not None:
                    return Recorded(service, updated, False, updated.reason != pending.reason)
        stored, created = ledger.record(event)
        if created:
            return Recorded(service, stored, True, False)
    raise InterlockError(f"{ledger.directory}: the {service} event keeps changing; not recorded")
