"""Deferred hooks: named operations that must not run while auto restarts are off.

A hook is a command (argv, never a shell string) with a name such as `config-changed`. When auto
restarts are off, `interlock hook run NAME -- CMD…` records it instead of running it; the records
live in interlock's own state directory, one JSON file each, written atomically under a lock.
`interlock run-deferred-hooks` runs them in recorded order and stops at the first failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from interlock.errors import FileFormatError, InterlockError
from interlock.host.atomic import FileLock, write_atomic
from interlock.host.policy import is_valid_service_name
from interlock.host.trusted_file import directory_problem, excerpt, read_text

STATE_DIR = "/var/lib/interlock"
HOOK_SUFFIX = ".hook"
HOOK_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class DeferredHook:
    name: str
    command: tuple[str, ...]
    timestamp: float
    path: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "command": list(self.command), "timestamp": self.timestamp}


class HookFailed(InterlockError):
    def __init__(self, hook: DeferredHook, detail: str) -> None:
        super().__init__(f"deferred hook {hook.name} ({' '.join(hook.command)}) failed: {detail}")
        self.hook = hook


def validate_hook_name(name: str) -> str:
    if not is_valid_service_name(name):
        raise InterlockError(f"{name!r} is not a valid hook name (letters, digits, - _ . @ :)")
    return name


class HookStore:
    def __init__(self, state_dir: str | Path = STATE_DIR) -> None:
        self.directory = Path(state_dir) / "hooks"

    def _lock(self) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        return FileLock(str(self.directory / ".lock"))

    def read(self) -> tuple[list[DeferredHook], list[FileFormatError]]:
        """The recorded hooks; a record that is not root's alone is reported and never run."""
        hooks: list[DeferredHook] = []
        problems: list[FileFormatError] = []
        if not self.directory.is_dir():
            return hooks, problems
        untrusted = directory_problem(str(self.directory))
        if untrusted is not None:
            return hooks, [untrusted]
        for path in sorted(self.directory.glob(f"*{HOOK_SUFFIX}")):
            try:
                data = json.loads(read_text(str(path), HOOK_MAX_BYTES))
                command = data["command"]
                if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
                    raise ValueError("command must be a list of strings")
                hooks.append(
                    DeferredHook(
                        validate_hook_name(str(data["name"])),
                        tuple(command),
                        float(data["timestamp"]),
                        str(path),
                    )
                )
            except FileNotFoundError:
                continue
            except FileFormatError as exc:
                problems.append(exc)
            except (ValueError, KeyError, TypeError, RecursionError, InterlockError) as exc:
                detail = excerpt(str(exc))
                problems.append(FileFormatError(str(path), f"unreadable deferred hook: {detail}"))
        hooks.sort(key=lambda hook: (hook.timestamp, hook.path or ""))
        return hooks, problems

    def record(self, name: str, command: list[str]) -> DeferredHook:
        """Record a hook; the same name and command recorded again stays one entry."""
        validate_hook_name(name)
        if not command:
            raise InterlockError("a hook needs a command")
        with self._lock():
            hooks, _ = self.read()
            for hook in hooks:
                if hook.name == name and hook.command == tuple(command):
                    return hook
            now = time.time()
            path = self.directory / f"{time.time_ns():020d}-{name}{HOOK_SUFFIX}"
            hook = DeferredHook(name, tuple(command), now, str(path))
            # Command lines can carry secrets (a password in an argument): root's eyes only.
            text = json.dumps(hook.as_dict(), indent=2) + "\n"
            write_atomic(str(path), text, mode=0o600, exclusive=True)
            return hook

    def remove(self, hooks: list[DeferredHook]) -> None:
        with self._lock():
            for hook in hooks:
                if hook.path:
                    try:
                        os.unlink(hook.path)
                    except FileNotFoundError:
                        pass


def run_hook_command(hook: DeferredHook, timeout: float = 3600) -> None:
    try:
        result = subprocess.run(list(hook.command), check=False, timeout=timeout)
    except FileNotFoundError:
        raise HookFailed(hook, f"{hook.command[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise HookFailed(hook, f"did not finish in {timeout:g}s") from None
    if result.returncode != 0:
        raise HookFailed(hook, f"exit status {result.returncode}")
