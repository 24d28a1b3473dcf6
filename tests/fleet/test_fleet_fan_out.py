"""fan_out: a sliding window, outcomes in host order, every failure kept with its reason."""

from __future__ import annotations

import asyncio

import pytest

from interlock.errors import UsageError
from interlock.fleet.inventory import Host
from interlock.fleet.transport import HostOutcome, HostUnreachable, fan_out

HOSTS = [Host(name=f"h{i:02d}", address=f"192.0.2.{i}") for i in range(1, 31)]


def test_outcomes_in_host_order_with_values_and_errors() -> None:
    async def probe(host: Host) -> str:
        index = int(host.name[1:])
        await asyncio.sleep(0.001 * (31 - index))  # later hosts finish first
        if index % 7 == 0:
            raise HostUnreachable(host.name, "connection refused")
        if index == 10:
            raise ValueError("bad reply")
        return host.name.upper()

    outcomes = asyncio.run(fan_out(HOSTS, probe, window=8))
    assert [o.host for o in outcomes] == HOSTS
    failed = {o.host.name: o.reason for o in outcomes if not o.ok}
    assert failed == {
        "h07": "connection refused",
        "h10": "ValueError: bad reply",
        "h14": "connection refused",
        "h21": "connection refused",
        "h28": "connection refused",
    }
    assert all(o.value == o.host.name.upper() for o in outcomes if o.ok)
    assert all(o.value is None and isinstance(o.error, Exception) for o in outcomes if not o.ok)


def test_window_bounds_concurrency_and_is_reached() -> None:
    running = 0
    peak = 0

    async def probe(host: Host) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1

    asyncio.run(fan_out(HOSTS, probe, window=6))
    assert peak == 6


def test_slots_are_refilled_while_a_slow_host_runs() -> None:
    """A fixed-batch scheduler would deadlock here: the slow host waits for 20 others."""
    finished = 0
    enough = asyncio.Event()

    async def probe(host: Host) -> None:
        nonlocal finished
        if host is HOSTS[0]:
            await asyncio.wait_for(enough.wait(), timeout=10)
        else:
            await asyncio.sleep(0)
            finished += 1
            if finished == 20:
                enough.set()

    outcomes = asyncio.run(fan_out(HOSTS, probe, window=4))
    assert all(o.ok for o in outcomes), [o.reason for o in outcomes if not o.ok]


def test_progress_reports_every_host_once() -> None:
    seen: list[tuple[str, int, int, bool]] = []

    async def probe(host: Host) -> int:
        if host.name == "h03":
            raise HostUnreachable(host.name, "timed out")
        return 1

    def progress(outcome: HostOutcome[int], done: int, total: int) -> None:
        seen.append((outcome.host.name, done, total, outcome.ok))

    asyncio.run(fan_out(HOSTS[:5], probe, window=2, progress=progress))
    assert sorted(name for name, *_ in seen) == ["h01", "h02", "h03", "h04", "h05"]
    assert [done for _, done, _, _ in seen] == [1, 2, 3, 4, 5]
    assert {total for _, _, total, _ in seen} == {5}
    assert ("h03", False) in {(name, ok) for name, _, _, ok in seen}


def test_empty_host_list() -> None:
    async def probe(host: Host) -> None:
        raise AssertionError("not called")

    assert asyncio.run(fan_out([], probe)) == []


def test_window_must_be_positive() -> None:
    async def probe(host: Host) -> None:
        return None

    with pytest.raises(UsageError, match="at least 1"):
        asyncio.run(fan_out(HOSTS, probe, window=0))


def test_cancelling_the_run_cancels_hosts_in_flight() -> None:
    cancelled: list[str] = []

    async def probe(host: Host) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(host.name)
            raise

    async def run() -> None:
        await asyncio.wait_for(fan_out(HOSTS, probe, window=3), timeout=0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(run())
    assert sorted(cancelled) == ["h01", "h02", "h03"]
