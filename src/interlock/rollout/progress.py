"""A live view of a run a person can follow: batches, hosts, the step each is at, what it waits for.

It only subscribes to the event stream; the engine does not know it exists. `render()` builds a
rich renderable from the state gathered so far; `rich.live.Live` redraws it a few times a second.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from interlock.observe.plain_text import printable
from interlock.rollout import events
from interlock.rollout.events import Event, describe
from interlock.rollout.states import HOST_FINAL, HostState, RunState, StepState

STATE_STYLE: dict[str, str] = {
    HostState.PENDING: "dim",
    HostState.RUNNING: "bold cyan",
    HostState.DONE: "green",
    HostState.FAILED: "bold red",
    HostState.SKIPPED: "yellow",
}


@dataclass
class HostView:
    name: str
    batch: str
    state: str = HostState.PENDING
    step: str = ""
    since: float = 0.0
    waiting: str = ""
    detail: str = ""


@dataclass
class BatchView:
    id: str
    stage: str
    hosts: list[str]
    state: str = HostState.PENDING


@dataclass
class ProgressView:
    run: str = ""
    state: str = "starting"
    started: float = field(default_factory=time.monotonic)
    batches: list[BatchView] = field(default_factory=list)
    hosts: dict[str, HostView] = field(default_factory=dict)
    batch_wait: str = ""
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    max_rows: int = 14

    def __call__(self, event: Event) -> None:
        self.run = event.run
        handler = getattr(self, "on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)
        if event.kind in (
            events.HOST_FINISHED,
            events.CLEANUP,
            events.WINDOW_WAITING,
            events.NOTICE,
            events.RUN_FINISHED,
        ) or (event.kind == events.STEP_FINISHED and event.state == StepState.FAILED):
            self.recent.append(time.strftime("%H:%M:%S ") + describe(event))

    def on_run_started(self, event: Event) -> None:
        self.state = RunState.RUNNING
        finished: dict[str, Any] = event.data.get("host_states", {})
        for batch in event.data.get("batches", []):
            names = [str(name) for name in batch["hosts"]]
            self.batches.append(BatchView(str(batch["id"]), str(batch["stage"]), names))
            for name in names:
                self.hosts[name] = HostView(
                    name, str(batch["id"]), str(finished.get(name, HostState.PENDING))
                )
        for batch_view in self.batches:
            if all(self.hosts[name].state in HOST_FINAL for name in batch_view.hosts):
                batch_view.state = HostState.DONE

    def on_batch_started(self, event: Event) -> None:
        self.batch_wait = ""
        for batch in self.batches:
            if batch.id == event.batch:
                batch.state = HostState.RUNNING

    def on_batch_finished(self, event: Event) -> None:
        for batch in self.batches:
            if batch.id == event.batch:
                batch.state = HostState.DONE

    def on_window_waiting(self, event: Event) -> None:
        self.batch_wait = event.detail or ""

    def on_gate_waiting(self, event: Event) -> None:
        if event.host is None:
            self.batch_wait = f"pre-gates: {event.detail}"
        elif event.host in self.hosts:
            self.hosts[event.host].waiting = event.detail or ""

    def on_gate_passed(self, event: Event) -> None:
        self.batch_wait = ""

    def on_host_started(self, event: Event) -> None:
        view = self.hosts.get(event.host or "")
        if view is not None:
            view.state, view.since, view.detail = HostState.RUNNING, time.monotonic(), ""

    def on_step_started(self, event: Event) -> None:
        view = self.hosts.get(event.host or "")
        if view is not None:
            view.step, view.waiting = event.step or "", ""

    def on_host_finished(self, event: Event) -> None:
        view = self.hosts.get(event.host or "")
        if view is not None:
            view.state, view.step, view.waiting = event.state or "?", "", ""
            view.detail = event.detail or ""

    def on_run_finished(self, event: Event) -> None:
        self.state = event.state or "finished"

    def count(self, state: str) -> int:
        return sum(1 for view in self.hosts.values() if view.state == state)

    def render(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        done_batches = sum(1 for b in self.batches if b.state == HostState.DONE)
        header = Text.assemble(
            ("rollout ", "bold"),
            (printable(self.run), "cyan"),
            f"  {printable(self.state)}  ",
            f"batches {done_batches}/{len(self.batches)}  ",
            ("done ", "green"),
            str(self.count(HostState.DONE)),
            ("  failed ", "red"),
            str(self.count(HostState.FAILED)),
            ("  skipped ", "yellow"),
            str(self.count(HostState.SKIPPED)),
            f"  of {len(self.hosts)}  ",
            (f"{elapsed:5.0f} s", "dim"),
        )
        parts: list[RenderableType] = [header]
        if self.batch_wait:
            parts.append(Text(f"waiting: {printable(self.batch_wait)}", style="yellow"))
        table = Table(show_edge=False, pad_edge=False, header_style="bold", expand=False)
        for column in ("batch", "host", "state", "step", "for", "waiting on / detail"):
            table.add_column(column)
        for view in self.rows():
            running = view.state == HostState.RUNNING
            # Every value is a Text: names, steps and details are data, never rich markup.
            table.add_row(
                Text(printable(view.batch)),
                Text(printable(view.name)),
                Text(printable(view.state), style=STATE_STYLE.get(view.state, "")),
                Text(printable(view.step) if running else ""),
                Text(f"{time.monotonic() - view.since:4.0f} s" if running else ""),
                Text(printable(view.waiting if running else view.detail, 90), style="dim"),
            )
        parts.append(table)
        parts.extend(Text(line, style="dim") for line in self.recent)
        return Group(*parts)

    def rows(self) -> list[HostView]:
        """Hosts under way first, then recent failures, then the current batch's others."""
        running = [v for v in self.hosts.values() if v.state == HostState.RUNNING]
        failed = [v for v in self.hosts.values() if v.state == HostState.FAILED]
        current = {b.id for b in self.batches if b.state == HostState.RUNNING}
        others = [
            v
            for v in self.hosts.values()
            if v.batch in current and v.state not in (HostState.RUNNING, HostState.FAILED)
        ]
        return (running + failed + others)[: self.max_rows]
