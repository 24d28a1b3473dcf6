"""What every service manager answers: is the service running, since when, as which process."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass

from interlock.errors import InterlockError


@dataclass(frozen=True)
class ServiceState:
    """A service at one moment; `started_at` is a lower bound of its start, in epoch seconds."""

    name: str
    active: bool
    pid: int | None = None
    started_at: float | None = None
    invocation: str | None = None  # systemd's InvocationID: new at every start

    def started_after(self, timestamp: int) -> bool:
        """True only if the service has certainly started after an integer epoch timestamp.

        Event timestamps are truncated to the second, so the event may have happened up to
        a second after `timestamp`: a start counts only from `timestamp + 1` on. Never started
        (or not running) means not satisfied.
        """
        if not self.active or self.started_at is None:
            return False
        return self.started_at >= timestamp + 1

    def differs_from(self, before: ServiceState) -> bool:
        """A new run of the service: another invocation, another main process or a later start."""
        if not self.active:
            return False
        if not before.active:
            return True
        if self.invocation and before.invocation:
            return self.invocation != before.invocation
        if self.pid is not None and before.pid is not None and self.pid != before.pid:
            return True
        if self.started_at is not None and before.started_at is not None:
            return self.started_at > before.started_at
        return False


class ServiceError(InterlockError):
    """A service action failed; the message says which service, what and why."""


class ServiceManager(abc.ABC):
    """Restart, stop, start and inspect services on this host."""

    kind: str

    @abc.abstractmethod
    def state(self, name: str) -> ServiceState: ...

    def states(self, names: list[str]) -> dict[str, ServiceState]:
        return {name: self.state(name) for name in names}

    @abc.abstractmethod
    def act(self, name: str, action: str) -> None:
        """Run start/stop/restart through the manager itself, bypassing policy-rc.d."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    def restart_and_verify(self, name: str, timeout: float = 30.0) -> ServiceState:
        """Restart, then wait until the service runs as a new instance; raise if it does not."""
        before = self.state(name)
        self.act(name, "restart")
        deadline = time.monotonic() + timeout
        while True:
            after = self.state(name)
            if after.differs_from(before):
                return after
            if time.monotonic() >= deadline:
                state = "running the same instance" if after.active else "not running"
                raise ServiceError(
                    f"{name}: restart did not take effect ({state} after {timeout:g}s)"
                )
            time.sleep(0.1)
