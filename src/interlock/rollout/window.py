"""Maintenance windows: when a new batch may start.

A window opens on some days of the week at a local time and closes at another local time, in a
named time zone; an end at or before the start means the window runs past midnight into the next
day. Several windows may be combined. Work already under way finishes when a window closes; only
the start of a new batch waits for the next opening.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")


class WindowError(ValueError):
    """A window description that cannot be understood; the message says which part."""


@dataclass(frozen=True)
class MaintenanceWindow:
    days: frozenset[int]  # 0 = Monday, the day the window opens on
    start: time
    end: time
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def intervals(self, around: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The openings from the day before `around` to a week after, as UTC instants."""
        zone = self.zone
        local_day = around.astimezone(zone).date()
        for offset in range(-1, 9):
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = _instant(day, self.start, zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            closes = _instant(end_day, self.end, zone)
            # 02:30-03:00 on a spring-forward night would close before it opens: no opening.
            if closes > opens:
                yield opens, closes

    def describe(self) -> str:
        return f"{describe_days(self.days)} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    # A local time a DST change skips is read on the clock before the change (02:30 on a
    # spring-forward night is 03:30 summer time); a repeated one means its first occurrence.
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class WindowSchedule:
    """Any of several windows; no windows at all means always open."""

    windows: tuple[MaintenanceWindow, ...] = ()

    def is_open(self, moment: datetime) -> bool:
        return self.next_open(moment) == moment.astimezone(UTC)

    def next_open(self, moment: datetime) -> datetime:
        """`moment` (in UTC) if a window is open then, else the next time one opens."""
        now = moment.astimezone(UTC)
        if not self.windows:
            return now
        best: datetime | None = None
        for window in self.windows:
            for opens, closes in window.intervals(now):
                if closes <= now:
                    continue
                candidate = max(opens, now)
                if best is None or candidate < best:
                    best = candidate
                break
        if best is None:
            raise WindowError("no maintenance window opens in the next week")
        return best

    def closes_at(self, moment: datetime) -> datetime | None:
        """When the window open at `moment` closes (None when always open or closed now)."""
        now = moment.astimezone(UTC)
        if not self.windows:
            return None
        ends = [
            closes
            for window in self.windows
            for opens, closes in window.intervals(now)
            if opens <= now < closes
        ]
        return max(ends) if ends else None

    def describe(self) -> str:
        return "; ".join(window.describe() for window in self.windows) or "always"


ALWAYS = WindowSchedule()


def parse_days(text: str) -> frozenset[int]:
    """`mon-fri`, `sat,sun`, `mon,wed-fri`, `daily` or `*`: the days a window opens on."""
    value = text.strip().lower()
    if value in ("daily", "*", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in value.split(","):
        first, sep, last = part.strip().partition("-")
        start = _day(first)
        stop = _day(last) if sep else start
        day = start
        while True:
            days.add(day)
            if day == stop:
                break
            day = (day + 1) % 7  # fri-mon wraps over the weekend
    return frozenset(days)


def _day(text: str) -> int:
    name = text.strip()
    for index, full in enumerate(_FULL_DAYS):
        if name in (full, full[:3]):
            return index
    raise WindowError(f"unknown day {name!r} (expected mon, tue, … sun)")


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_clock(text: str) -> time:
    match = _TIME_RE.fullmatch(text.strip())
    if not match:
        raise WindowError(f"expected a time as HH:MM, not {text!r}")
    hour, minute = int(match[1]), int(match[2])
    if hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23 or minute > 59:
        raise WindowError(f"no such time of day: {text!r}")
    return time(hour, minute)


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(
            f"unknown time zone {name!r} (expected a name like Europe/Berlin)"
        ) from None
    return name


def parse_window(text: str) -> MaintenanceWindow:
    """The command-line form `DAYS HH:MM-HH:MM [ZONE]`: `mon-fri 22:00-04:00 Europe/Berlin`."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise WindowError(f"expected 'DAYS HH:MM-HH:MM [TIMEZONE]', not {text!r}")
    start, sep, end = parts[1].partition("-")
    if not sep:
        raise WindowError(f"expected a time range HH:MM-HH:MM, not {parts[1]!r}")
    return MaintenanceWindow(
        days=parse_days(parts[0]),
        start=parse_clock(start),
        end=parse_clock(end),
        timezone=check_timezone(parts[2] if len(parts) == 3 else "UTC"),
    )


def describe_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )
