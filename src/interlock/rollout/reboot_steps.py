"""The steps of a reboot as plan records: record the boot, reboot, the services came back.

Records only (the plan stores them in the journal); what they do on a host is in `reboot`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from interlock.rollout.plan import ApplyDeferred

DEFAULT_COMMAND = ("systemctl", "reboot")
DEFAULT_DEADLINE = 600.0
NEEDED = "needed"  # reboot the hosts that need it (reboot-required, a newer kernel)
ALWAYS = "always"
WHEN = (NEEDED, ALWAYS)


@dataclass(frozen=True)
class BootRecord:
    """Record the host's boot and whether it needs a reboot, before anything is touched."""

    kind: ClassVar[str] = "boot"

    def describe(self) -> str:
        return (
            "record the boot (boot_id, PID 1's start, btime) and whether a reboot is needed "
            "(/run/reboot-required, a newer kernel)"
        )

    def commands(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Reboot:
    """Reboot the host and wait until it answers from a new boot; a reboot pays every restart
    deferred before it, so on a host that needs one it replaces them. With `when: needed`, a
    host that needs none gets `otherwise` (its deferred restarts) instead, or nothing."""

    kind: ClassVar[str] = "reboot"
    argv: tuple[str, ...] = DEFAULT_COMMAND
    deadline: float = DEFAULT_DEADLINE
    when: str = NEEDED
    otherwise: ApplyDeferred | None = None

    def describe(self) -> str:
        wait = f"wait ≤ {self.deadline:g} s for SSH from a new boot"
        if self.when == ALWAYS:
            return f"reboot (it pays every deferred restart: none is restarted), {wait}"
        fallback = (
            f"; else {self.otherwise.describe()}"
            if self.otherwise is not None
            else "; else nothing"
        )
        return (
            f"if the host needs a reboot: reboot instead of restarting (it pays every deferred "
            f"restart), {wait}{fallback}"
        )

    def commands(self) -> list[str]:
        lines = [f"$ {shlex.join(self.argv)}"]
        if self.otherwise is not None and self.when == NEEDED:
            lines += [f"otherwise: {line}" for line in self.otherwise.commands()]
        return lines


@dataclass(frozen=True)
class CameBack:
    """Every service that ran before the reboot runs again, as a new instance."""

    kind: ClassVar[str] = "came-back"
    snapshot: str
    deadline: float = 120.0

    def describe(self) -> str:
        return (
            f"each service recorded running by {self.snapshot} runs again as a new instance "
            f"(InvocationID, pid or start time), within {self.deadline:g} s"
        )

    def commands(self) -> list[str]:
        return []
