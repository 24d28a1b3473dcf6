"""Drain a server on every haproxy that sends it traffic, and put it back.

The classic drain: `set server BE/SRV state drain` (no new requests; health checks go on), then
poll the server's current sessions until they are 0 on every LB within a bound. What happens when
the bound passes is the caller's choice: fail (the server stays drained, and the error says so),
force (cut the remaining sessions), or continue (return with the report marked timed out).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from interlock.errors import InterlockError, UsageError
from interlock.lb.runtime import RuntimeClient, UnknownCommand
from interlock.lb.servers import Target, find_server

# After `shutdown sessions`, haproxy closes the streams at once; this bounds the confirmation.
FORCE_CONFIRM_SECONDS = 5.0
FIRST_POLL_SECONDS = 0.02


class OnTimeout(enum.StrEnum):
    FAIL = "fail"
    FORCE = "force"
    CONTINUE = "continue"


@dataclass(frozen=True)
class ServerSample:
    """A server's state and load on one LB at one moment."""

    status: str
    scur: int
    queue: int
    used_cur: int | None  # None: this haproxy has no `show servers conn`

    @property
    def sessions(self) -> int:
        # scur counts streams on the server; used_cur counts server connections carrying one.
        return max(self.scur, self.used_cur or 0)

    @property
    def is_up(self) -> bool:
        return self.status in ("UP", "no check")

    @property
    def in_maintenance(self) -> bool:
        # "MAINT", or "MAINT (resolution)" / "MAINT (via be/srv)" when inherited.
        return self.status.startswith("MAINT")


@dataclass(frozen=True)
class LbDrain:
    lb: str
    backend: str
    server: str
    before: ServerSample
    after: ServerSample
    peak_sessions: int
    seconds: float  # until its sessions were 0 (or until the drain gave up)
    forced: bool

    @property
    def drained(self) -> bool:
        return self.after.sessions == 0


@dataclass(frozen=True)
class DrainReport:
    results: tuple[LbDrain, ...]
    seconds: float
    timed_out: bool
    forced: bool

    @property
    def complete(self) -> bool:
        return all(result.drained for result in self.results)

    @property
    def warning(self) -> str | None:
        if self.complete:
            return None
        busy = ", ".join(
            f"{r.lb}:{r.backend}/{r.server} ({r.after.sessions})"
            for r in self.results
            if not r.drained
        )
        return f"drain timed out after {self.seconds:.1f} s; sessions remain on {busy}"


@dataclass(frozen=True)
class LbEnable:
    lb: str
    backend: str
    server: str
    before: ServerSample
    after: ServerSample
    seconds: float


@dataclass(frozen=True)
class EnableReport:
    results: tuple[LbEnable, ...]
    seconds: float


class DrainTimeout(InterlockError):
    """Sessions did not reach 0 within the bound; the server is left drained."""

    def __init__(self, report: DrainReport, detail: str) -> None:
        self.report = report
        drained = ", ".join(sorted({f"{r.lb}:{r.backend}/{r.server}" for r in report.results}))
        super().__init__(
            f"{detail}; left in drain state on {drained} "
            "(`interlock lb enable` puts it back in rotation)"
        )


class EnableTimeout(InterlockError):
    """The server was set ready but its health checks did not bring it UP within the bound."""

    def __init__(self, report: EnableReport, detail: str) -> None:
        self.report = report
        super().__init__(detail)


class PartialChange(InterlockError):
    """A state change succeeded on some LBs and failed on others."""


async def drain(
    clients: Sequence[RuntimeClient],
    backend: str,
    server: str,
    *,
    timeout: float,
    on_timeout: OnTimeout = OnTimeout.FAIL,
    poll: float = 0.2,
) -> DrainReport:
    """Drain `backend/server` on every one of `clients` that has it."""
    targets = await find_server(clients, backend, server)
    return await drain_targets(targets, timeout=timeout, on_timeout=on_timeout, poll=poll)


async def enable(
    clients: Sequence[RuntimeClient],
    backend: str,
    server: str,
    *,
    timeout: float,
    poll: float = 0.5,
) -> EnableReport:
    """Set `backend/server` ready on every LB that has it and wait until it is UP on all."""
    targets = await find_server(clients, backend, server)
    return await enable_targets(targets, timeout=timeout, poll=poll)


async def drain_targets(
    targets: Sequence[Target],
    *,
    timeout: float,
    on_timeout: OnTimeout = OnTimeout.FAIL,
    poll: float = 0.2,
) -> DrainReport:
    """Drain these servers (found by name or by address) together: one bound for all of them."""
    check_bounds(targets, timeout, poll)
    loop = asyncio.get_running_loop()
    start = loop.time()
    before = await sample_all(targets)
    # A server in maintenance takes no traffic already; `state drain` would lift the maintenance.
    await apply_all(
        [t for t, b in zip(targets, before, strict=True) if not b.in_maintenance],
        "drain",
        lambda t: t.client.set_server_state(t.backend, t.server, "drain"),
    )
    latest, peaks, zero_at = await wait_for_zero(targets, start + timeout, poll, before)
    forced = [False] * len(targets)
    timed_out = any(s.sessions for s in latest)
    if timed_out and on_timeout is OnTimeout.FORCE:
        busy = [i for i, s in enumerate(latest) if s.sessions]
        await apply_all(
            [targets[i] for i in busy],
            "shutdown sessions",
            lambda t: t.client.shutdown_sessions(t.backend, t.server),
        )
        for i in busy:
            forced[i] = True
        confirm_deadline = loop.time() + FORCE_CONFIRM_SECONDS
        latest, more_peaks, zero_at = await wait_for_zero(targets, confirm_deadline, poll, latest)
        peaks = [max(a, b) for a, b in zip(peaks, more_peaks, strict=True)]
    end = loop.time()
    report = DrainReport(
        results=tuple(
            LbDrain(
                lb=t.lb,
                backend=t.backend,
                server=t.server,
                before=before[i],
                after=latest[i],
                peak_sessions=peaks[i],
                seconds=settled(zero_at[i], end) - start,
                forced=forced[i],
            )
            for i, t in enumerate(targets)
        ),
        seconds=end - start,
        timed_out=timed_out,
        forced=any(forced),
    )
    if not report.complete and on_timeout is not OnTimeout.CONTINUE:
        what = "after cutting them" if report.forced else f"within {timeout:g} s"
        raise DrainTimeout(report, f"sessions did not reach 0 {what}: {report.warning}")
    return report


async def enable_targets(
    targets: Sequence[Target], *, timeout: float, poll: float = 0.5
) -> EnableReport:
    """Set these servers ready and wait until every one is UP (health checks have risen)."""
    check_bounds(targets, timeout, poll)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    before = await sample_all(targets)
    await apply_all(
        targets, "ready", lambda t: t.client.set_server_state(t.backend, t.server, "ready")
    )
    up_at: list[float | None] = [None] * len(targets)
    while True:
        latest = await sample_all(targets)
        now = loop.time()
        for i, sample in enumerate(latest):
            up_at[i] = settled(up_at[i], now) if sample.is_up else None
        if all(at is not None for at in up_at) or now >= deadline:
            break
        await asyncio.sleep(min(poll, deadline - now))
    end = loop.time()
    report = EnableReport(
        results=tuple(
            LbEnable(
                lb=t.lb,
                backend=t.backend,
                server=t.server,
                before=before[i],
                after=latest[i],
                seconds=settled(up_at[i], end) - start,
            )
            for i, t in enumerate(targets)
        ),
        seconds=end - start,
    )
    down = [r for r in report.results if not r.after.is_up]
    if down:
        detail = ", ".join(f"{r.lb}:{r.backend}/{r.server} is {r.after.status}" for r in down)
        raise EnableTimeout(
            report,
            f"set ready, but not UP within {timeout:g} s: {detail} "
            "(it takes traffic as soon as its health checks pass)",
        )
    return report


async def wait_for_zero(
    targets: Sequence[Target], deadline: float, poll: float, initial: Sequence[ServerSample]
) -> tuple[list[ServerSample], list[int], list[float | None]]:
    """Poll until every target has 0 sessions in the same round, or until `deadline`.

    Always samples at least once, so a deadline already passed means "check once", never
    "wait forever". Returns the last samples, the peak sessions and when each reached 0.
    """
    loop = asyncio.get_running_loop()
    peaks = [s.sessions for s in initial]
    zero_at: list[float | None] = [None] * len(targets)
    # Most requests end within milliseconds: poll fast at first, then back off to `poll`.
    interval = min(poll, FIRST_POLL_SECONDS)
    while True:
        latest = await sample_all(targets)
        now = loop.time()
        for i, sample in enumerate(latest):
            peaks[i] = max(peaks[i], sample.sessions)
            # A drained server still takes persistent sessions: 0 counts from when it last was.
            zero_at[i] = settled(zero_at[i], now) if sample.sessions == 0 else None
        if all(s.sessions == 0 for s in latest) or now >= deadline:
            return latest, peaks, zero_at
        await asyncio.sleep(min(interval, deadline - now))
        interval = min(poll, interval * 2)


async def sample_all(targets: Sequence[Target]) -> list[ServerSample]:
    return list(await asyncio.gather(*(sample(target) for target in targets)))


async def sample(target: Target) -> ServerSample:
    client = target.client

    async def conns() -> int | None:
        try:
            rows = await client.show_servers_conn(target.backend)
        except UnknownCommand:
            return None  # haproxy before 2.4: scur alone tells the sessions
        for row in rows:
            if row.server == target.server:
                return row.used_cur
        return None

    stats, used_cur = await asyncio.gather(client.show_stat(target.backend_id), conns())
    for row in stats:
        if row.kind == "server" and row.proxy == target.backend and row.name == target.server:
            return ServerSample(
                status=row.status, scur=row.scur, queue=row.qcur or 0, used_cur=used_cur
            )
    raise InterlockError(
        f"load balancer {target.lb}: server {target.backend}/{target.server} vanished"
    )


async def apply_all(
    targets: Sequence[Target], what: str, action: Callable[[Target], Awaitable[None]]
) -> None:
    """Run `action` on every target at once; if some fail, say which succeeded."""
    if not targets:
        return
    outcomes = await asyncio.gather(*(action(t) for t in targets), return_exceptions=True)
    failed = [
        (t, o) for t, o in zip(targets, outcomes, strict=True) if isinstance(o, BaseException)
    ]
    if not failed:
        return
    for _, outcome in failed:
        if not isinstance(outcome, InterlockError):
            raise outcome
    done = [t.label for t, o in zip(targets, outcomes, strict=True) if o is None]
    message = f"{what} failed: " + "; ".join(str(o) for _, o in failed)
    if done:
        message += f" (already applied on {', '.join(done)})"
    raise PartialChange(message)


def settled(since: float | None, now: float) -> float:
    """When a condition that holds now first held: `since` if it already did, else `now`."""
    return now if since is None else since


def check_bounds(targets: Sequence[Target], timeout: float, poll: float) -> None:
    if not targets:
        raise UsageError("no servers to act on")
    if timeout < 0:
        raise UsageError(f"timeout must be 0 or more seconds, got {timeout:g}")
    if poll <= 0:
        raise UsageError(f"poll interval must be more than 0 seconds, got {poll:g}")
