"""Maintenance windows: days, times across midnight, time zones and DST, several windows."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlock.rollout.window import (
    MaintenanceWindow,
    WindowError,
    WindowSchedule,
    parse_days,
    parse_window,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def night_shift() -> WindowSchedule:
    return WindowSchedule((parse_window("mon-fri 22:00-04:00 Europe/Berlin"),))


def test_parse_days_ranges_lists_and_wrap() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("mon,wed-fri") == frozenset({0, 2, 3, 4})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("daily") == frozenset(range(7))
    assert parse_days("Tuesday") == frozenset({1})
    with pytest.raises(WindowError, match="unknown day 'funday'"):
        parse_days("funday")


def test_parse_window_errors_name_the_part() -> None:
    with pytest.raises(WindowError, match="HH:MM"):
        parse_window("mon 22-04")
    with pytest.raises(WindowError, match="no such time"):
        parse_window("mon 25:00-04:00")
    with pytest.raises(WindowError, match="unknown time zone"):
        parse_window("mon 22:00-04:00 Mars/Olympus")
    with pytest.raises(WindowError, match="expected 'DAYS"):
        parse_window("mon")


def test_open_inside_closed_outside_the_same_evening() -> None:
    window = night_shift()
    monday_23 = at("2025-03-03 23:00")  # a Monday
    assert window.is_open(monday_23)
    monday_21 = at("2025-03-03 21:59")
    assert not window.is_open(monday_21)
    assert window.next_open(monday_21) == at("2025-03-03 22:00").astimezone(UTC)


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    window = night_shift()
    # Saturday 03:00 is still Friday night's window.
    assert window.is_open(at("2025-03-08 03:59"))
    assert not window.is_open(at("2025-03-08 04:00"))
    # Sunday 03:00: Saturday opens no window, so the next is Monday 22:00.
    assert not window.is_open(at("2025-03-09 03:00"))
    assert window.next_open(at("2025-03-09 03:00")) == at("2025-03-10 22:00").astimezone(UTC)
    assert window.closes_at(at("2025-03-08 01:00")) == at("2025-03-08 04:00").astimezone(UTC)


def test_the_zone_decides_not_the_callers_clock() -> None:
    window = night_shift()
    # 21:30 UTC on a winter Monday is 22:30 in Berlin: open.
    assert window.is_open(datetime(2025, 3, 3, 21, 30, tzinfo=UTC))
    # 21:30 UTC on a summer Monday is 23:30 in Berlin: open; 19:30 UTC is 21:30: closed.
    assert window.is_open(datetime(2025, 7, 7, 21, 30, tzinfo=UTC))
    assert not window.is_open(datetime(2025, 7, 7, 19, 30, tzinfo=UTC))


def test_dst_spring_forward_keeps_local_times() -> None:
    # Berlin skips 02:00-03:00 on 2025-03-30 (a Sunday).
    window = WindowSchedule((parse_window("sun 01:00-04:00 Europe/Berlin"),))
    opens = window.next_open(at("2025-03-29 12:00"))
    assert opens == at("2025-03-30 01:00").astimezone(UTC)
    closes = window.closes_at(opens)
    assert closes is not None
    # Three wall-clock hours, two real ones.
    assert (closes - opens).total_seconds() == 2 * 3600
    # A window that lies wholly in the skipped hour moves one hour later that day (03:15
    # summer time), as the times were read on the winter clock.
    gap = WindowSchedule((parse_window("sun 02:15-02:45 Europe/Berlin"),))
    moved = gap.next_open(at("2025-03-30 00:00"))
    assert moved == datetime(2025, 3, 30, 1, 15, tzinfo=UTC)
    assert gap.closes_at(moved) == datetime(2025, 3, 30, 1, 45, tzinfo=UTC)


def test_dst_fall_back_keeps_local_times() -> None:
    # Berlin repeats 02:00-03:00 on 2025-10-26 (a Sunday).
    window = WindowSchedule((parse_window("sun 01:00-04:00 Europe/Berlin"),))
    opens = window.next_open(at("2025-10-25 12:00"))
    closes = window.closes_at(opens)
    assert closes is not None
    assert (closes - opens).total_seconds() == 4 * 3600


def test_several_windows_the_earliest_opening_wins() -> None:
    schedule = WindowSchedule(
        (
            parse_window("mon-fri 22:00-04:00 Europe/Berlin"),
            parse_window("sat,sun 08:00-20:00 Europe/Berlin"),
        )
    )
    saturday_7 = at("2025-03-08 07:00")
    assert not schedule.is_open(saturday_7)
    assert schedule.next_open(saturday_7) == at("2025-03-08 08:00").astimezone(UTC)
    assert schedule.is_open(at("2025-03-09 19:59"))
    assert schedule.describe() == (
        "mon-fri 22:00-04:00 Europe/Berlin; sat-sun 08:00-20:00 Europe/Berlin"
    )


def test_no_windows_means_always_open() -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    assert WindowSchedule().is_open(moment)
    assert WindowSchedule().next_open(moment) == moment
    assert WindowSchedule().describe() == "always"


def test_start_equal_to_end_is_a_whole_day() -> None:
    window = WindowSchedule((MaintenanceWindow(frozenset({2}), time(6, 0), time(6, 0), "UTC"),))
    assert window.is_open(datetime(2025, 3, 5, 6, 0, tzinfo=UTC))  # a Wednesday
    assert window.is_open(datetime(2025, 3, 6, 5, 59, tzinfo=UTC))
    assert not window.is_open(datetime(2025, 3, 6, 6, 0, tzinfo=UTC))


windows = st.builds(
    MaintenanceWindow,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@given(st.lists(windows, min_size=1, max_size=3), moments)
def test_next_open_is_open_and_nothing_earlier_is(
    items: list[MaintenanceWindow], moment: datetime
) -> None:
    schedule = WindowSchedule(tuple(items))
    opens = schedule.next_open(moment)
    assert opens >= moment
    assert schedule.is_open(opens)
    if opens > moment:
        assert not schedule.is_open(moment)
