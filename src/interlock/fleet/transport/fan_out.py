"""Run one coroutine per host with at most `window` in flight: a sliding window, not batches.

A slow host holds one slot; the others keep flowing through the remaining slots. Each host
ends as an outcome carrying its value or its error: one host's failure never stops the others
and is never dropped. Cancellation (Ctrl-C, a caller's timeout) still cancels the whole run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from interlock.errors import InterlockError, UsageError
from interlock.fleet.inventory import Host
from interlock.fleet.transport.errors import TransportError

T = TypeVar("T")

DEFAULT_WINDOW = 24


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    host: Host
    value: T | None = None
    error: Exception | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> str | None:
        """Why the host failed, without the host name (the outcome already carries it)."""
        if self.error is None:
            return None
        if isinstance(self.error, TransportError):
            return self.error.reason
        if isinstance(self.error, InterlockError):
            return str(self.error)
        return f"{type(self.error).__name__}: {self.error}"


# Called after each host finishes with (outcome, hosts finished so far, total hosts).
Progress = Callable[[HostOutcome[T], int, int], None]


async def fan_out(
    hosts: Iterable[Host],
    fn: Callable[[Host], Awaitable[T]],
    *,
    window: int = DEFAULT_WINDOW,
    progress: Progress[T] | None = None,
) -> list[HostOutcome[T]]:
    """Outcomes in the order of `hosts`."""
    if window < 1:
        raise UsageError(f"the concurrency window must be at least 1, not {window}")
    targets = list(hosts)
    outcomes: list[HostOutcome[T] | None] = [None] * len(targets)
    pending = iter(enumerate(targets))
    finished = 0

    async def worker() -> None:
        nonlocal finished
        # Workers share one iterator: each takes the next host as soon as it is free.
        for index, host in pending:
            started = time.monotonic()
            try:
                outcome = HostOutcome(
                    host, value=await fn(host), duration=time.monotonic() - started
                )
            except Exception as exc:  # noqa: BLE001 - each host's failure becomes its outcome
                outcome = HostOutcome(host, error=exc, duration=time.monotonic() - started)
            outcomes[index] = outcome
            finished += 1
            if progress is not None:
                progress(outcome, finished, len(targets))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(window, len(targets))):
            group.create_task(worker())
    return [outcome for outcome in outcomes if outcome is not None]
