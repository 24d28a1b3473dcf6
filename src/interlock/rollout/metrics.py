"""Timings and counts of a run: the final summary, and Prometheus textfile metrics.

The textfile is rewritten atomically (temporary file, fsync, rename) whenever a host or batch
finishes, so node_exporter's textfile collector never reads half a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interlock.host.atomic import write_atomic
from interlock.observe.prometheus import label_value
from interlock.rollout import events
from interlock.rollout.events import Event
from interlock.rollout.states import HOST_STATES, HostState, RunState, StepState

PREFIX = "interlock_rollout"


@dataclass
class StepTimes:
    count: int = 0
    total: float = 0.0
    longest: float = 0.0
    failed: int = 0

    def add(self, duration: float | None, failed: bool) -> None:
        if duration is not None:
            self.count += 1
            self.total += duration
            self.longest = max(self.longest, duration)
        if failed:
            self.failed += 1


@dataclass
class RunTally:
    """Everything the summary and the metrics say, gathered from the event stream."""

    run: str = ""
    state: str = RunState.RUNNING
    started: float | None = None
    finished: float | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # host → last state
    host_seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, StepTimes] = field(default_factory=dict)
    batches_done: int = 0
    reason: str | None = None

    def __call__(self, event: Event) -> None:
        self.run = event.run
        if event.kind == events.RUN_STARTED:
            self.started = event.time
            self.state = RunState.RUNNING
            for name in event.data.get("hosts", []):
                self.hosts.setdefault(str(name), HostState.PENDING)
            for name, state in event.data.get("host_states", {}).items():
                self.hosts[str(name)] = str(state)
        elif event.kind == events.HOST_STARTED and event.host:
            self.hosts[event.host] = HostState.RUNNING
        elif event.kind == events.HOST_FINISHED and event.host and event.state:
            self.hosts[event.host] = event.state
            if event.duration is not None:
                self.host_seconds[event.host] = event.duration
        elif event.kind == events.STEP_FINISHED and event.step and event.state != StepState.SKIPPED:
            self.steps.setdefault(event.step, StepTimes()).add(
                event.duration, event.state == StepState.FAILED
            )
        elif event.kind == events.BATCH_FINISHED:
            self.batches_done += 1
        elif event.kind == events.RUN_FINISHED:
            self.finished = event.time
            self.state = event.state or self.state
            self.reason = event.detail

    def count(self, state: str) -> int:
        return sum(1 for value in self.hosts.values() if value == state)

    def summary_lines(self) -> list[str]:
        elapsed = (self.finished or 0.0) - (self.started or 0.0) if self.started else 0.0
        lines = [
            f"run {self.run}: {self.state} after {elapsed:.1f} s"
            + (f" ({self.reason})" if self.reason else ""),
            "hosts: "
            + ", ".join(
                f"{self.count(state)} {state}" for state in HOST_STATES if self.count(state)
            ),
        ]
        if self.steps:
            lines.append("step timings (count, mean, longest):")
            for name, times in self.steps.items():
                mean = times.total / times.count if times.count else 0.0
                failed = f", {times.failed} failed" if times.failed else ""
                lines.append(
                    f"  {name:<10} {times.count:>4}  {mean:7.2f} s  {times.longest:7.2f} s{failed}"
                )
        return lines


class TextfileMetrics:
    """Writes the run's metrics for node_exporter's textfile collector."""

    def __init__(self, path: str | Path, tally: RunTally) -> None:
        self.path = Path(path)
        self.tally = tally

    def __call__(self, event: Event) -> None:
        if event.kind in (
            events.RUN_STARTED,
            events.HOST_FINISHED,
            events.BATCH_FINISHED,
            events.RUN_FINISHED,
        ):
            self.write()

    def write(self) -> None:
        write_atomic(str(self.path), render_metrics(self.tally), mode=0o644)


def render_metrics(tally: RunTally) -> str:
    run = label_value(tally.run)
    lines = [
        f"# HELP {PREFIX}_hosts Hosts of the rollout by state.",
        f"# TYPE {PREFIX}_hosts gauge",
    ]
    for state in HostState:
        lines.append(f'{PREFIX}_hosts{{run="{run}",state="{state}"}} {tally.count(state)}')
    lines += [
        f"# HELP {PREFIX}_state The run's state (1 for the current one).",
        f"# TYPE {PREFIX}_state gauge",
    ]
    # Aborting is short-lived and ends in aborted: the gauge has no series for it.
    for run_state in (s for s in RunState if s != RunState.ABORTING):
        value = 1 if tally.state == run_state else 0
        lines.append(f'{PREFIX}_state{{run="{run}",state="{run_state}"}} {value}')
    lines += [
        f"# HELP {PREFIX}_batches_done Batches finished so far.",
        f"# TYPE {PREFIX}_batches_done gauge",
        f'{PREFIX}_batches_done{{run="{run}"}} {tally.batches_done}',
        f"# HELP {PREFIX}_step_seconds Time spent in steps, by step.",
        f"# TYPE {PREFIX}_step_seconds summary",
    ]
    for name, times in sorted(tally.steps.items()):
        step = label_value(name)
        lines.append(f'{PREFIX}_step_seconds_sum{{run="{run}",step="{step}"}} {times.total:.6f}')
        lines.append(f'{PREFIX}_step_seconds_count{{run="{run}",step="{step}"}} {times.count}')
    lines += [
        f"# HELP {PREFIX}_step_failures_total Steps that failed, by step.",
        f"# TYPE {PREFIX}_step_failures_total counter",
    ]
    for name, times in sorted(tally.steps.items()):
        lines.append(
            f'{PREFIX}_step_failures_total{{run="{run}",step="{label_value(name)}"}} {times.failed}'
        )
    if tally.started is not None:
        lines += [
            f"# HELP {PREFIX}_start_time_seconds When the run started (Unix time).",
            f"# TYPE {PREFIX}_start_time_seconds gauge",
            f'{PREFIX}_start_time_seconds{{run="{run}"}} {tally.started:.3f}',
        ]
    if tally.finished is not None:
        lines += [
            f"# HELP {PREFIX}_end_time_seconds When the run stopped (Unix time).",
            f"# TYPE {PREFIX}_end_time_seconds gauge",
            f'{PREFIX}_end_time_seconds{{run="{run}"}} {tally.finished:.3f}',
        ]
    return "\n".join(lines) + "\n"
