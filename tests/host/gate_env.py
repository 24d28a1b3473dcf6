"""A gate under test: the real generated policy-rc.d script, configured into a temporary tree."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from interlock.host.gate_install import render_gate_script
from interlock.host.ledger import DeferredEvent, Ledger

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
FIXTURES = REPO / "tests" / "fixtures"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
INTERLOCK = REPO / ".venv" / "bin" / "interlock"
SYSTEM_PYTHON = "/usr/bin/python3"

# Every exit code the gate may give; 102 and 104 never come out of it.
GATE_CODES = frozenset((0, 1, 100, 101, 103, 105, 106))


@dataclass
class GateEnv:
    """Paths of one configured gate; `run` executes the generated script like invoke-rc.d does."""

    root: Path
    policy_dir: Path
    ledger_dir: Path
    log_file: Path
    cache_file: Path
    config_path: Path
    script: Path

    def configure(self, **extra: str | int) -> None:
        """(Re)write gate.conf: the tmp directories plus any extra `key = value` settings."""
        settings: dict[str, str | int] = {
            "policy_dir": str(self.policy_dir),
            "ledger_dir": str(self.ledger_dir),
            "log_file": str(self.log_file),
            "cache_file": str(self.cache_file),
        }
        settings.update(extra)
        lines = ["# written by the test suite"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def write_policy(self, name: str, text: str) -> Path:
        path = self.policy_dir / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.script), *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=env if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            stdin=subprocess.DEVNULL,
        )

    def event_files(self) -> list[Path]:
        return sorted(self.ledger_dir.glob("*.deferred"))

    def events(self) -> list[DeferredEvent]:
        view = Ledger(str(self.ledger_dir)).read()
        assert view.problems == [], view.problems
        return view.events

    def event_dicts(self) -> list[dict[str, object]]:
        """Every event file as PyYAML (the charms' reader) sees it."""
        return [yaml.safe_load(path.read_text()) for path in self.event_files()]

    def log_lines(self) -> list[str]:
        if not self.log_file.exists():
            return []
        return self.log_file.read_text().splitlines()


def make_gate_env(
    base: Path, python: str = SYSTEM_PYTHON, package_dir: str = str(SRC), **config: str | int
) -> GateEnv:
    base.mkdir(parents=True, exist_ok=True)
    env = GateEnv(
        root=base,
        policy_dir=base / "etc" / "policy-rc.d",
        ledger_dir=base / "var" / "lib" / "policy-rc.d",
        log_file=base / "var" / "log" / "interlock" / "gate.log",
        cache_file=base / "var" / "lib" / "interlock" / "gate-policy.cache",
        config_path=base / "etc" / "interlock" / "gate.conf",
        script=base / "usr" / "sbin" / "policy-rc.d",
    )
    for directory in (env.policy_dir, env.ledger_dir, env.cache_file.parent, env.script.parent):
        directory.mkdir(parents=True, exist_ok=True)
    env.config_path.parent.mkdir(parents=True, exist_ok=True)
    env.configure(**config)
    env.script.write_text(render_gate_script(package_dir, str(env.config_path), python))
    env.script.chmod(env.script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return env


def charm_policy(requestor: str, blocked: dict[str, list[str]], kind: str = "charm") -> str:
    """A policy file as the charms write it: comment line, then PyYAML's flow-list style."""
    lines = ["# Managed by juju", "blocked_actions:"]
    lines += [f"  {service}: [{', '.join(actions)}]" for service, actions in blocked.items()]
    lines += [f"policy_requestor_name: {requestor}", f"policy_requestor_type: {kind}"]
    return "\n".join(lines) + "\n"


def shell_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
