"""What a rollout asks of coordination: a disruption slot in each group it limits, for one host.

Two backends: `LocalCoordination` (one operator: the run's own limits and the journal's host
leases are all there is, as before) and `EtcdCoordination` (slots shared with every other actor
through etcd). The executor holds a slot from before a host's first step until after its
cleanup.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from interlock.errors import InterlockError

Report = Callable[[str], None]


class CoordinationError(InterlockError):
    """The coordination store refused or cannot be reached; the message says what to do."""


@dataclass(frozen=True)
class Group:
    """A group a rollout limits: its key (`role=compute`) and how many may be disrupted at once."""

    key: str
    limit: int


@dataclass(frozen=True)
class Holding:
    """One held slot as every actor sees it."""

    group: str
    limit: int
    holder: str  # `<run>@<host>`
    run: str
    host: str
    kind: str  # rollout | upgrade | fleetlock | …
    actor: str  # user@machine pid N
    since: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Holding:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            group=str(raw["group"]),
            limit=int(raw["limit"]),
            holder=str(raw["holder"]),
            run=str(raw["run"]),
            host=str(raw["host"]),
            kind=str(raw.get("kind", "?")),
            actor=str(raw.get("actor", "?")),
            since=float(raw.get("since", 0.0)),
        )


def holder_id(run: str, host: str) -> str:
    return f"{run}@{host}"


class Coordination(ABC):
    """Slots for one run. `acquire` waits until every group has room (reporting why it waits);
    `release` frees them. `notify` hears about lost and regained coordination."""

    notify: Report = staticmethod(lambda message: None)

    @abstractmethod
    async def open(self, run: str, kind: str, what: str) -> None: ...

    @abstractmethod
    async def acquire(self, host: str, groups: Sequence[Group], report: Report) -> None: ...

    @abstractmethod
    async def release(self, host: str) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class LocalCoordination(Coordination):
    """One operator: the executor's own group counts and the journal's host leases suffice."""

    async def open(self, run: str, kind: str, what: str) -> None:
        return None

    async def acquire(self, host: str, groups: Sequence[Group], report: Report) -> None:
        return None

    async def release(self, host: str) -> None:
        return None

    async def close(self) -> None:
        return None
