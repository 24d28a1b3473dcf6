"""Findings become ledger events: one per service, reasons merged, nothing lost under races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from interlock.detect.recorder import (
    file_changed_reason,
    merge_into,
    merge_reasons,
    record_restart,
)
from interlock.host.ledger import DeferredEvent, Ledger, parse_event


def test_file_changed_reason_is_sorted_and_unique() -> None:
    reason = file_changed_reason(["/etc/b.conf", "/etc/a.conf", "/etc/b.conf"])
    assert reason == "File(s) changed: /etc/a.conf, /etc/b.conf"


@pytest.mark.parametrize(
    ("old", "new", "merged"),
    [
        ("File(s) changed: /b", "File(s) changed: /a", "File(s) changed: /a, /b"),
        ("File(s) changed: /a", "File(s) changed: /a", "File(s) changed: /a"),
        ("Package update", "Package update: cron 1 → 2", "Package update: cron 1 → 2"),
        (
            "Package update: cron 1 → 2",
            "File(s) changed: /etc/crontab",
            "Package update: cron 1 → 2; File(s) changed: /etc/crontab",
        ),
        ("Package update: cron 1 → 2", "Package update", "Package update: cron 1 → 2"),
        ("operator asked", "operator asked", "operator asked"),
    ],
)
def test_merge_reasons(old: str, new: str, merged: str) -> None:
    assert merge_reasons(old, new) == merged


def test_record_creates_then_merges_then_sees_it_pending(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    first = record_restart(ledger, "nova-compute", "File(s) changed: /etc/nova/nova.conf", 100)
    assert first.outcome == "recorded"
    second = record_restart(ledger, "nova-compute", "File(s) changed: /etc/nova/api.conf", 200)
    assert second.outcome == "merged"
    third = record_restart(ledger, "nova-compute", "File(s) changed: /etc/nova/api.conf", 200)
    assert third.outcome == "already pending"
    (event,) = ledger.read().events
    assert event.reason == "File(s) changed: /etc/nova/api.conf, /etc/nova/nova.conf"
    assert (event.requestor_type, event.requestor_name, event.action) == (
        "interlock",
        "interlock",
        "restart",
    )
    assert event.timestamp == 200  # a newer finding moves the obligation forward


def test_merge_into_an_event_of_another_requestor(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    charm = DeferredEvent("cron", "restart", "Package update", 100, "neutron-gateway", "charm")
    stored, _ = ledger.record(charm)
    assert stored.path is not None
    merged = merge_into(ledger, stored.path, "Package update: cron 1 → 2")
    assert merged == stored.replace(reason="Package update: cron 1 → 2")
    assert ledger.read().events == [merged]
    assert merge_into(ledger, str(tmp_path / "gone.deferred"), "x") is None


def test_other_requestors_events_are_left_alone(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    charm = DeferredEvent("cron", "restart", "Package update", 100, "neutron-gateway", "charm")
    ledger.record(charm)
    record_restart(ledger, "cron", "File(s) changed: /etc/crontab", 150)
    reasons = sorted((e.requestor, e.reason) for e in ledger.read().events)
    assert reasons == [
        ("charm:neutron-gateway", "Package update"),
        ("interlock:interlock", "File(s) changed: /etc/crontab"),
    ]


def test_concurrent_recorders_leave_one_event_with_every_reason(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    paths = [f"/etc/app/{index:02d}.conf" for index in range(16)]
    barrier = threading.Barrier(len(paths))

    def record(path: str) -> None:
        barrier.wait()
        record_restart(Ledger(str(tmp_path)), "app", file_changed_reason([path]), 100)

    threads = [threading.Thread(target=record, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (event,) = ledger.read().events
    assert event.reason == file_changed_reason(paths)
    assert event.path is not None
    assert parse_event(Path(event.path).read_text(), event.path) == event
