"""What happens during a run, as events: the executor emits them, displays and files subscribe.

The engine knows nothing about screens or files; a JSON-lines file, a log file, the metrics and
the live progress display are all subscribers of the same stream.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from interlock.fleet.inventory import Host

from interlock.observe.plain_text import printable

# Event kinds, in the order a run produces them.
RUN_STARTED = "run-started"
WINDOW_WAITING = "window-waiting"
BATCH_STARTED = "batch-started"
GATE_WAITING = "gate-waiting"  # a pre-gate or a post-gate probe that has not passed yet
GATE_PASSED = "gate-passed"
HOST_STARTED = "host-started"
STEP_STARTED = "step-started"
STEP_FINISHED = "step-finished"  # state: done, skipped, failed, undone
HOST_FINISHED = "host-finished"  # state: done, failed, skipped, interrupted
CLEANUP = "cleanup"
BATCH_FINISHED = "batch-finished"
RUN_FINISHED = "run-finished"  # state: complete, paused, aborted
NOTICE = "notice"


@dataclass(frozen=True)
class Event:
    kind: str
    run: str
    time: float = field(default_factory=time.time)
    batch: str | None = None
    host: str | None = None
    step: str | None = None
    state: str | None = None
    detail: str | None = None
    duration: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, {})}


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            subscriber(event)


class WaitReports:
    """The `gate-waiting` events of one run's hosts: what a step waits for, from the executor
    and from the actions alike; an unchanged wait is repeated at most every `every` seconds."""

    def __init__(self, bus: EventBus, run_id: str, every: float = 5.0) -> None:
        self.bus = bus
        self.run_id = run_id
        self.every = every
        self.last: dict[tuple[str, str], tuple[str, float]] = {}

    def __call__(self, host: Host, step: str, detail: str) -> None:
        key = (host.name, step)
        seen = self.last.get(key)
        moment = time.monotonic()
        if seen is not None and seen[0] == detail and moment - seen[1] < self.every:
            return
        self.last[key] = (detail, moment)
        self.bus.emit(Event(GATE_WAITING, self.run_id, host=host.name, step=step, detail=detail))


class JsonLinesFile:
    """One JSON object per line, flushed per event so `tail -f` and a crash both see them."""

    def __init__(self, path: str | Path) -> None:
        self.handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def __call__(self, event: Event) -> None:
        self.handle.write(json.dumps(event.as_dict(), sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class TextLog:
    """A log for people: one line per event with a local timestamp."""

    def __init__(self, stream: TextIO, *, close: bool = False) -> None:
        self.stream = stream
        self.owned = close

    @classmethod
    def open(cls, path: str | Path) -> TextLog:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return cls(os.fdopen(fd, "a", encoding="utf-8"), close=True)

    def __call__(self, event: Event) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        self.stream.write(f"{stamp} {describe(event)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def describe(event: Event) -> str:
    """One line that says what happened, for logs and plain-text progress.

    Details carry hosts' output: the line is made printable, so it stays one line of text.
    """
    where = " ".join(part for part in (event.host, event.step) if part)
    took = f" ({event.duration:.2f} s)" if event.duration is not None else ""
    detail = f": {event.detail}" if event.detail else ""
    state = f" {event.state}" if event.state else ""
    if event.kind in (RUN_STARTED, RUN_FINISHED):
        line = f"run {event.run}{state or ' started'}{took}{detail}"
    elif event.kind in (BATCH_STARTED, BATCH_FINISHED):
        verb = "started" if event.kind == BATCH_STARTED else "finished"
        line = f"batch {event.batch} {verb}{took}{detail}"
    else:
        line = f"{event.kind} {where}{state}{took}{detail}".replace("  ", " ")
    return printable(line)
