"""interlock's files under a test directory, the gate configured for them, and the CLI to use them.

`interlock --root ROOT` reads policies, the ledger and state under ROOT; the gate script (bound
over /usr/sbin/policy-rc.d inside a namespace) is configured for the same directories.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from interlock.host.auto_restarts import set_auto_restarts
from interlock.host.gate import GateConfig
from interlock.host.gate_install import package_root, render_gate_script
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.paths import HostPaths

CLI = [sys.executable, "-m", "interlock.cli.main"]


@dataclass(frozen=True)
class Sandbox:
    root: Path
    paths: HostPaths
    gate_script: Path

    def cli(self, *args: str) -> list[str]:
        return [*CLI, "--root", str(self.root), *args]

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
    root = base / "root"
    paths = HostPaths.under(root)
    for directory in (paths.policy_dir, paths.ledger_dir, paths.state_dir):
        directory.mkdir(parents=True, exist_ok=True)
    paths.gate_config.parent.mkdir(parents=True, exist_ok=True)
    config = GateConfig()
    config.policy_dir = str(paths.policy_dir)
    config.ledger_dir = str(paths.ledger_dir)
    config.log_file = str(paths.gate_log)
    config.cache_file = str(paths.gate_cache)
    paths.gate_config.write_text(config.render())
    gate = base / "policy-rc.d"
    gate.write_text(render_gate_script(package_root(), str(paths.gate_config)))
    gate.chmod(0o755)
    return Sandbox(root, paths, gate)
