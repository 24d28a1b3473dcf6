"""interlock's files under a test directory, the gate configured for them, and the CLI to use them.

`interlock --root ROOT` reads policies, the ledger and state under ROOT; the gate script (bound
over /usr/sbin/policy-rc.d inside a namespace) is configured for the same directories.
"""

from __future__ import annotations

from pathlib import Path

from interlock.host.auto_restarts import set_auto_restarts
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.lab.sandbox import HostSandbox


class Sandbox(HostSandbox):
    def events(self) -> list[DeferredEvent]:
        view = Ledger(str(self.paths.ledger_dir)).read()
        assert not view.problems, view.problems
        return view.events

    def reasons(self) -> dict[str, list[str]]:
        """Service → the reasons of its events (one entry per event file)."""
        found: dict[str, list[str]] = {}
        for event in self.events():
            found.setdefault(event.unit, []).append(event.reason)
        return found

    def auto_restarts(self, on: bool) -> None:
        set_auto_restarts(self.paths.policy_dir, on, [])


def make_sandbox(base: Path) -> Sandbox:
    return Sandbox(base / "root")
