"""Watched configuration files: the charms' restart_on_change, for any host.

A restart map is a YAML file in `/etc/interlock/watch.d/` mapping file paths or glob patterns to
the services that read them:

    /etc/neutron/neutron.conf: [neutron-server, neutron-dhcp-agent]
    /etc/neutron/plugins/ml2/*.ini:
      - neutron-server

interlock keeps the SHA-256 of every matched file in its state directory. A file created,
changed or deleted since then means a restart of the pattern's services. With auto restarts off
for a service (any policy blocks its restart) it becomes one deferred event per service with
reason `File(s) changed: <sorted paths>`; otherwise the services are restarted one at a time, each
verified, stopping at the first failure (the failed and the remaining ones are recorded instead,
so nothing is lost). The hashes are updated once every change is restarted or recorded. A pattern
seen for the first time only records its baseline.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from interlock.detect.recorder import file_changed_reason, record_restart
from interlock.detect.system import System
from interlock.errors import FileFormatError
from interlock.host.atomic import FileLock, write_atomic
from interlock.host.ledger import Ledger
from interlock.host.policy import (
    canonical_service,
    covering_action,
    is_valid_service_name,
    load_policies,
)
from interlock.host.services.base import ServiceError

MAP_SUFFIX = ".yaml"
STATE_NAME = "watch-hashes.json"
LOCK_NAME = "watch.lock"
_STATE_FORMAT = 1


@dataclass(frozen=True)
class WatchEntry:
    pattern: str
    services: tuple[str, ...]
    source: str
    line: int


def _problem(path: str, message: str, node: yaml.Node | None) -> FileFormatError:
    return FileFormatError(path, message, node.start_mark.line + 1 if node is not None else None)


def parse_restart_map(text: str, path: str) -> list[WatchEntry]:
    """One restart map file; FileFormatError names the file and line of the first problem."""
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise FileFormatError(
            path, f"invalid YAML: {problem}", mark.line + 1 if mark else None
        ) from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise _problem(path, "a restart map maps file paths or globs to lists of services", root)
    entries = []
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode) or not key.value.startswith("/"):
            raise _problem(path, f"{key.value!r} is not an absolute path or glob pattern", key)
        if not isinstance(value, yaml.SequenceNode):
            kind = "a string" if isinstance(value, yaml.ScalarNode) else "a mapping"
            raise _problem(path, f"{key.value}: services must be a list, not {kind}", value)
        services = []
        for item in value.value:
            name = item.value if isinstance(item, yaml.ScalarNode) else None
            if not isinstance(name, str) or not is_valid_service_name(name):
                raise _problem(path, f"{key.value}: {name!r} is not a valid service name", item)
            services.append(canonical_service(name))
        if not services:
            raise _problem(path, f"{key.value}: no services listed", value)
        entries.append(WatchEntry(key.value, tuple(services), path, key.start_mark.line + 1))
    return entries


def load_restart_maps(directory: Path) -> tuple[list[WatchEntry], list[FileFormatError]]:
    """Every `*.yaml` map in the directory; a broken file is reported, the others still count."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [FileFormatError(str(directory), f"cannot list: {exc.strerror}")]
    entries: list[WatchEntry] = []
    problems: list[FileFormatError] = []
    for name in names:
        if not name.endswith(MAP_SUFFIX) or name.startswith("."):
            continue
        path = str(directory / name)
        try:
            with open(path, encoding="utf-8") as handle:
                entries.extend(parse_restart_map(handle.read(), path))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(FileFormatError(path, f"cannot read: {reason}"))
        except FileFormatError as exc:
            problems.append(exc)
    return entries, problems


def file_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def expand(entry: WatchEntry) -> dict[str, str]:
    """The files a pattern matches now and their hashes; a directory match is an error."""
    if glob.has_magic(entry.pattern):
        matches = sorted(glob.glob(entry.pattern))
    else:
        matches = [entry.pattern] if os.path.lexists(entry.pattern) else []
    directories = [match for match in matches if os.path.isdir(match)]
    if directories:
        hint = f" (watch files: {entry.pattern.rstrip('/')}/*)" if len(matches) == 1 else ""
        raise FileFormatError(
            entry.source,
            f"{entry.pattern} matches a directory, not a file: {', '.join(directories)}{hint}",
            entry.line,
        )
    hashes = {}
    for match in matches:
        try:
            hashes[match] = file_hash(match)
        except OSError as exc:
            raise FileFormatError(
                entry.source, f"{entry.pattern}: cannot read {match}: {exc.strerror}", entry.line
            ) from None
    return hashes


@dataclass(frozen=True)
class FileChange:
    path: str
    change: str  # created, changed or deleted
    services: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "change": self.change, "services": list(self.services)}


@dataclass(frozen=True)
class WatchScan:
    changes: list[FileChange]
    baseline: list[str]  # patterns seen for the first time
    problems: list[FileFormatError]
    current: dict[str, dict[str, str]]  # pattern → {path: hash}, for patterns read cleanly
    previous: dict[str, dict[str, str]]
    unreadable: list[str]  # patterns that could not be expanded or read this time

    def services(self) -> dict[str, list[str]]:
        """Service → the sorted, de-duplicated paths that changed for it."""
        paths: dict[str, set[str]] = {}
        for change in self.changes:
            for service in change.services:
                paths.setdefault(service, set()).add(change.path)
        return {service: sorted(paths[service]) for service in sorted(paths)}


def compare(
    entries: list[WatchEntry],
    current: dict[str, dict[str, str]],
    previous: dict[str, dict[str, str]],
) -> tuple[list[FileChange], list[str]]:
    """Pure: what changed between the stored hashes and the current ones, per pattern."""
    services: dict[str, set[str]] = {}
    for entry in entries:
        services.setdefault(entry.pattern, set()).update(entry.services)
    found: dict[tuple[str, str], set[str]] = {}
    baseline = []
    for pattern in sorted(current):
        if pattern not in previous:
            baseline.append(pattern)
            continue
        before, now = previous[pattern], current[pattern]
        for path in sorted(set(before) | set(now)):
            if path not in before:
                change = "created"
            elif path not in now:
                change = "deleted"
            elif before[path] != now[path]:
                change = "changed"
            else:
                continue
            found.setdefault((path, change), set()).update(services.get(pattern, ()))
    changes = [
        FileChange(path, change, tuple(sorted(names))) for (path, change), names in found.items()
    ]
    changes.sort(key=lambda item: item.path)
    return changes, baseline


class WatchState:
    """The stored hashes, `{pattern: {path: sha256}}`, in interlock's state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_NAME
        self.lock_path = state_dir / LOCK_NAME

    def lock(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        return FileLock(str(self.lock_path))

    def load(self) -> tuple[dict[str, dict[str, str]], FileFormatError | None]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return {}, FileFormatError(str(self.path), f"unreadable, starting over: {exc}")
        patterns = data.get("patterns") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("format") != _STATE_FORMAT
            or not isinstance(patterns, dict)
            or not all(isinstance(hashes, dict) for hashes in patterns.values())
        ):
            return {}, FileFormatError(str(self.path), "unknown format, starting over")
        return patterns, None

    def save(self, patterns: dict[str, dict[str, str]]) -> None:
        payload = {"format": _STATE_FORMAT, "patterns": patterns}
        write_atomic(str(self.path), json.dumps(payload, indent=1, sort_keys=True) + "\n")


def scan(system: System, state: WatchState) -> WatchScan:
    entries, problems = load_restart_maps(system.watch_dir)
    previous, state_problem = state.load()
    if state_problem is not None:
        problems.append(state_problem)
    current: dict[str, dict[str, str]] = {}
    unreadable: list[str] = []
    for entry in entries:
        try:
            hashes = expand(entry)
        except FileFormatError as exc:
            problems.append(exc)
            unreadable.append(entry.pattern)
            continue
        current.setdefault(entry.pattern, {}).update(hashes)
    for pattern in unreadable:
        current.pop(pattern, None)  # a pattern listed twice must not half-count
    changes, baseline = compare(entries, current, previous)
    return WatchScan(changes, baseline, problems, current, previous, unreadable)


@dataclass(frozen=True)
class ServiceAction:
    service: str
    paths: tuple[str, ...]
    action: str  # recorded, merged, already pending, restarted, failed, not attempted
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "paths": list(self.paths),
            "action": self.action,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class WatchReport:
    scan: WatchScan
    actions: list[ServiceAction] = field(default_factory=list)


def restart_blocked(system: System) -> Callable[[str], bool]:
    """Does a policy block this service's restart (auto restarts off)? Unreadable → yes."""
    policies, problems = load_policies(str(system.paths.policy_dir))

    def blocked(service: str) -> bool:
        if problems:
            return True
        canonical = canonical_service(service)
        return any(covering_action(p.blocked_for(canonical), "restart") for p in policies)

    return blocked


def check(system: System, apply: bool) -> WatchReport:
    """Compare the watched files with the stored hashes; with `apply`, act and store them."""
    state = WatchState(system.paths.state_dir)
    if not apply:
        return WatchReport(scan(system, state))
    with state.lock():
        result = scan(system, state)
        actions = _act(system, result.services())
        stored = dict(result.current)
        for pattern in result.unreadable:
            if pattern in result.previous:
                stored[pattern] = result.previous[pattern]  # keep what we knew
        state.save(stored)
    return WatchReport(result, actions)


def _act(system: System, services: dict[str, list[str]]) -> list[ServiceAction]:
    ledger = Ledger(str(system.paths.ledger_dir))
    deferred = restart_blocked(system)
    actions = []
    for service, paths in services.items():
        if deferred(service):
            recorded = record_restart(ledger, service, file_changed_reason(paths))
            actions.append(ServiceAction(service, tuple(paths), recorded.outcome))
    manager = system.manager()
    failed = False
    for service, paths in services.items():
        if deferred(service):
            continue
        reason = file_changed_reason(paths)
        if failed:
            record_restart(ledger, service, reason)
            actions.append(ServiceAction(service, tuple(paths), "not attempted", "recorded"))
            continue
        owed = [event for event in ledger.read().events if event.unit == service]
        try:
            after = manager.restart_and_verify(service)
        except (ServiceError, OSError) as exc:
            failed = True
            record_restart(ledger, service, reason)
            actions.append(ServiceAction(service, tuple(paths), "failed", f"{exc}; recorded"))
            continue
        ledger.remove(owed)  # a verified restart satisfies what the service owed before it
        actions.append(ServiceAction(service, tuple(paths), "restarted", f"pid {after.pid or '-'}"))
    return actions
