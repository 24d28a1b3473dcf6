"""What a step returns, and how it fails: shared by the actions and the gates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interlock.errors import InterlockError
from interlock.fleet.inventory import Host


class StepFailed(InterlockError):
    """A step did not achieve what it is for; the message says what was seen."""


@dataclass(frozen=True)
class StepOutcome:
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


# (host, step id, what is being waited for): shown as "gate waiting" by the displays.
WaitReporter = Callable[[Host, str, str], None]
