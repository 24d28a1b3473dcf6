"""What a run is, and the states a run, a host in a run and a step go through, as the journal
stores them.

Each is a `StrEnum`: a member is the string the journal holds, so rows written before these
types existed read back unchanged, and JSON output shows the same words.
"""

from __future__ import annotations

from enum import StrEnum


class RunKind(StrEnum):
    """What a run does; other actors (shared slots) see it, and `upgrade resume` looks for it."""

    ROLLOUT = "rollout"
    UPGRADE = "upgrade"


class RunState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ABORTING = "aborting"  # abort requested: the executor cleans up and ends the run
    COMPLETE = "complete"
    ABORTED = "aborted"


class HostState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepState(StrEnum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


RUN_ACTIVE = (RunState.RUNNING, RunState.PAUSED, RunState.ABORTING)
RUN_FINAL = (RunState.COMPLETE, RunState.ABORTED)
HOST_FINAL = (HostState.DONE, HostState.SKIPPED)
# The order in which counts of hosts are shown.
HOST_STATES = (
    HostState.DONE,
    HostState.FAILED,
    HostState.SKIPPED,
    HostState.PENDING,
    HostState.RUNNING,
)
