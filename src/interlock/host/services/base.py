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
        """A new run of the service: another invocation (systemd's InvocationID, or a sysv
        process's pid and start tick together), another main process, or a later start."""
        if not self.active:
            return False
        if not before.active:
            return True
        if self.invocation and before.invocation:
            return self.invocation != before.invocation
        if self.pid is not None and before.pid is not None and self.pid != before.pid:
            return True
        if self.started_at is not None and before.started_at is not None:
            # Start times derived from the boot time jitter by a hundredth of a second from
            # one reading to the next: the same process must not look restarted.
            return self.started_at > before.started_at + START_TIME_JITTER
        return False


START_TIME_JITTER = 0.05

# How long a new instance must keep running before a restart counts: a daemon that starts,
# fails to bind its port and exits within this time was not restarted.
DEFAULT_SETTLE = 2.0


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

    def instance_alive(self, state: ServiceState) -> bool:
        """Whether the process instance `state` saw still runs (only sysv can tell and needs
        to: systemd stops a unit's old processes before it starts the new invocation)."""
        return False

    def restart_and_verify(
        self, name: str, timeout: float = 30.0, settle: float = DEFAULT_SETTLE
    ) -> ServiceState:
        """Restart, then wait until the service runs as a new instance that stays up for
        `settle` seconds while the old instance is gone; raise if it does not within
        `timeout` (plus the settle time)."""
        before = self.state(name)
        self.act(name, "restart")
        deadline = time.monotonic() + timeout + settle
        candidate: ServiceState | None = None
        since = 0.0
        while True:
            after = self.state(name)
            now = time.monotonic()
            if not after.differs_from(before):
                candidate = None
            elif candidate is None or after.differs_from(candidate):
                candidate, since = after, now  # a (newer) new instance: settle from now
            elif now - since >= settle:
                if before.active and self.instance_alive(before):
                    raise ServiceError(
                        f"{name}: the old instance (pid {before.pid}) still runs beside a new "
                        f"one (pid {after.pid}): not a restart"
                    )
                return after
            if now >= deadline:
                raise ServiceError(f"{name}: restart did not take effect ({_seen(after, before)})")
            time.sleep(0.1)


def _seen(after: ServiceState, before: ServiceState) -> str:
    if not after.active:
        return "not running afterwards"
    if not after.differs_from(before):
        return f"still the same instance, pid {after.pid or '-'}"
    return f"pid {after.pid or '-'} did not stay up"
