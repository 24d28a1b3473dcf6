"""The ledger of deferred restarts: `/var/lib/policy-rc.d/*.deferred`, one event per file.

The format is the OpenStack charms' (six keys, YAML), so a host a charm manages and a host
interlock manages read the same both ways:

    action: restart
    policy_requestor_name: neutron-gateway
    policy_requestor_type: charm
    reason: Package update
    service: openvswitch-switch
    timestamp: 1619175335

What interlock adds is safety: every read-modify-write holds one lock file in the directory,
every write is atomic, a repeated deferral refreshes the pending event instead of adding a
duplicate, and clearing re-reads a file under the lock so it never removes an event that changed
meanwhile. An event file is read only if root alone can change it, up to 64 KiB, without YAML
anchors or aliases, and with strings where the format has strings; text from another host's
ledger goes through the same parser and caps. The gate records through this module, so it stays
on the standard library.
"""

from __future__ import annotations

import os

from interlock.errors import FileFormatError
from interlock.host.atomic import FileLock, sync_directory, unique_suffix, write_atomic
from interlock.host.policy import canonical_service, is_valid_service_name, load_yaml
from interlock.host.trusted_file import (
    EVENT_MAX_BYTES,
    directory_problem,
    quoted,
    read_text,
    size_text,
)

LEDGER_DIR = "/var/lib/policy-rc.d"
EVENT_SUFFIX = ".deferred"
LOCK_NAME = ".interlock.lock"
PACKAGE_UPDATE = "Package update"

_REQUIRED = ("action", "reason", "service", "timestamp")
_REQUIRED_ORDER = ("service", "action", "reason", "timestamp")


class DeferredEvent:
    """One deferred action: what, why, since when, and who asked for it to be deferred."""

    __slots__ = (
        "action",
        "path",
        "reason",
        "requestor_name",
        "requestor_type",
        "service",
        "timestamp",
    )

    def __init__(
        self,
        service: str,
        action: str,
        reason: str,
        timestamp: int,
        requestor_name: str | None,
        requestor_type: str | None,
        path: str | None = None,
    ) -> None:
        self.service = service
        self.action = action
        self.reason = reason
        self.timestamp = timestamp
        self.requestor_name = requestor_name
        self.requestor_type = requestor_type
        self.path = path

    def _fields(self) -> tuple[object, ...]:
        return (
            self.service,
            self.action,
            self.reason,
            self.timestamp,
            self.requestor_name,
            self.requestor_type,
            self.path,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeferredEvent) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"DeferredEvent(service={self.service!r}, action={self.action!r}, "
            f"reason={self.reason!r}, timestamp={self.timestamp}, "
            f"requestor={self.requestor_type}:{self.requestor_name}, path={self.path!r})"
        )

    @property
    def unit(self) -> str:
        """The service name without a `.service` suffix (how policies and status name it)."""
        return canonical_service(self.service)

    @property
    def requestor(self) -> str:
        if self.requestor_type is None and self.requestor_name is None:
            return "unknown"
        return f"{self.requestor_type or 'unknown'}:{self.requestor_name or 'unknown'}"

    def same_deferral(self, other: DeferredEvent) -> bool:
        """Same requestor, service and action: a second denial adds nothing new."""
        return (
            self.requestor_type == other.requestor_type
            and self.requestor_name == other.requestor_name
            and self.unit == other.unit
            and self.action == other.action
        )

    def replace(self, **changes: object) -> DeferredEvent:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return DeferredEvent(**values)

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "action": self.action,
            "reason": self.reason,
            "timestamp": self.timestamp,
            "policy_requestor_name": self.requestor_name,
            "policy_requestor_type": self.requestor_type,
            "path": self.path,
        }


def check_event_size(size: int, path: str) -> None:
    """An event file over the cap is refused unread, wherever it is read."""
    if size > EVENT_MAX_BYTES:
        raise FileFormatError(path, f"larger than {size_text(EVENT_MAX_BYTES)}")


def parse_event(text: str, path: str) -> DeferredEvent:
    """Read one event file (any YAML style the charms' PyYAML versions wrote).

    The text may come from another host: it is held to the same size cap as a local file.
    """
    check_event_size(max(len(text), len(text.encode(errors="replace"))), path)
    if not text.strip():
        raise FileFormatError(path, "empty file (an interrupted writer?)")
    data = load_yaml(text, path)
    if not isinstance(data, dict):
        raise FileFormatError(path, "an event file must be a YAML mapping", 1)
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise FileFormatError(path, f"missing key(s): {', '.join(missing)}")
    service, action, reason, timestamp = (data[key] for key in _REQUIRED_ORDER)
    if not isinstance(service, str) or not is_valid_service_name(service):
        raise FileFormatError(path, f"service {quoted(service)} is not a valid service name")
    if not isinstance(action, str) or not action:
        raise FileFormatError(path, f"action {quoted(action)} is not an action name")
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise FileFormatError(path, f"timestamp {quoted(timestamp)} is not epoch seconds")
    texts = []
    for key in ("reason", "policy_requestor_name", "policy_requestor_type"):
        value = data.get(key)
        if isinstance(value, bool | list | dict):
            raise FileFormatError(path, f"{key} must be a string, not {type(value).__name__}")
        # A number or a date is how YAML reads some unquoted words: their text is what was meant.
        texts.append(None if value is None else str(value))
    reason, requestor_name, requestor_type = texts
    return DeferredEvent(
        service, action, reason or "", timestamp, requestor_name, requestor_type, path
    )


def read_event(path: str) -> DeferredEvent:
    """One event file, read as the ledger reads it (trusted, size-capped); FileNotFoundError
    when it is gone, FileFormatError for anything else wrong with it."""
    return parse_event(read_text(path, EVENT_MAX_BYTES), path)


_PLAIN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-./()@+,=;"
)
_PLAIN_WORDS = frozenset(("yes", "no", "true", "false", "on", "off", "null", "~", "y", "n"))


def yaml_scalar(value: str) -> str:
    """A string as a YAML scalar that reads back unchanged: plain when safe, else quoted."""
    if (
        value
        and value[0].isalpha()
        and value[-1] != " "
        and all(char in _PLAIN_CHARS for char in value)
        and value.lower() not in _PLAIN_WORDS
    ):
        return value
    if all(char.isprintable() for char in value):
        return "'" + value.replace("'", "''") + "'"
    escaped = []
    for char in value:
        if char == "\\" or char == '"':
            escaped.append("\\" + char)
        elif char.isprintable() and char != "\n":
            escaped.append(char)
        else:
            code = ord(char)
            if code < 0x100:
                escaped.append(f"\\x{code:02x}")
            elif code < 0x10000:
                escaped.append(f"\\u{code:04x}")
            else:
                escaped.append(f"\\U{code:08x}")  # \u takes exactly four digits
    return '"' + "".join(escaped) + '"'


def render_event(event: DeferredEvent) -> str:
    """The file content, keys sorted, block style: what current PyYAML writes for the charms."""
    return (
        f"action: {yaml_scalar(event.action)}\n"
        f"policy_requestor_name: {yaml_scalar(event.requestor_name or 'unknown')}\n"
        f"policy_requestor_type: {yaml_scalar(event.requestor_type or 'unknown')}\n"
        f"reason: {yaml_scalar(event.reason)}\n"
        f"service: {yaml_scalar(event.service)}\n"
        f"timestamp: {int(event.timestamp)}\n"
    )


class LedgerView:
    """What a read found: the events, and every file that could not be read (with why)."""

    __slots__ = ("events", "problems")

    def __init__(self, events: list[DeferredEvent], problems: list[FileFormatError]) -> None:
        self.events = events
        self.problems = problems


class Ledger:
    """A deferred-event directory and the lock that serialises its writers."""

    __slots__ = ("directory",)

    def __init__(self, directory: str = LEDGER_DIR) -> None:
        self.directory = str(directory)

    def lock(self) -> FileLock:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        return FileLock(os.path.join(self.directory, LOCK_NAME))

    def _event_paths(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            os.path.join(self.directory, name)
            for name in names
            if name.endswith(EVENT_SUFFIX) and not name.startswith(".")
        )

    def read(self) -> LedgerView:
        """Every event, oldest first; unreadable or untrusted files are reported, not fatal."""
        untrusted = directory_problem(self.directory)
        if untrusted is not None:
            return LedgerView([], [untrusted])
        events: list[DeferredEvent] = []
        problems: list[FileFormatError] = []
        for path in self._event_paths():
            try:
                events.append(read_event(path))
            except FileNotFoundError:
                continue  # cleared between listing and reading
            except FileFormatError as exc:
                problems.append(exc)
        events.sort(key=lambda event: (event.timestamp, event.service, event.path or ""))
        return LedgerView(events, problems)

    def record(self, event: DeferredEvent) -> tuple[DeferredEvent, bool]:
        """Add an event unless the same deferral is pending; return (stored event, created).

        A repeat moves the pending event's timestamp forward to the new request, so a restart
        that happened between the two requests cannot satisfy the newer one.
        """
        with self.lock():
            for existing in self.read().events:
                if existing.same_deferral(event):
                    if event.timestamp > existing.timestamp and existing.path:
                        refreshed = existing.replace(timestamp=event.timestamp)
                        write_atomic(existing.path, render_event(refreshed))
                        return refreshed, False
                    return existing, False
            kind = event.requestor_type or "unknown"
            name = event.requestor_name or "unknown"
            path = os.path.join(self.directory, f"{kind}-{name}-{unique_suffix()}{EVENT_SUFFIX}")
            stored = event.replace(path=path)
            write_atomic(path, render_event(stored), exclusive=True)
            return stored, True

    def remove(self, events: list[DeferredEvent]) -> list[DeferredEvent]:
        """Remove these events, each only if its file still says what it said when read."""
        removed = []
        with self.lock():
            for event in events:
                if event.path is None:
                    continue
                try:
                    current = read_event(event.path)
                except (OSError, FileFormatError):
                    continue
                if current != event:
                    continue  # refreshed or rewritten since: it is a newer request
                os.unlink(event.path)
                removed.append(event)
            if removed:
                sync_directory(self.directory)
        return removed
