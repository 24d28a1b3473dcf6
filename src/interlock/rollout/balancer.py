"""The load balancers in front of the hosts, as the rollout needs them: drain a host, enable it.

`Balancer` is the seam: the executor knows only these two calls. `HaproxyBalancer` implements it
with the haproxy runtime-API library (`interlock.lb`): every server on every LB that points at
the host's address (and port, when the spec names one) is drained, then enabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from interlock.errors import InterlockError
from interlock.fleet.inventory import Host
from interlock.lb.drain import OnTimeout, drain_targets, enable_targets
from interlock.lb.runtime import RuntimeClient
from interlock.lb.servers import find_by_address


class Balancer(Protocol):
    async def drain(
        self, host: Host, address: str, port: int | None, timeout: float, on_timeout: str
    ) -> str:
        """Take the host out of rotation on every LB; return what was done, for the journal."""

    async def enable(self, host: Host, address: str, port: int | None, timeout: float) -> str:
        """Put it back and wait until the LBs see it UP."""

    async def close(self) -> None: ...


class NoBalancer:
    """What a rollout without load balancers has: a drain step is a configuration error."""

    async def drain(
        self, host: Host, address: str, port: int | None, timeout: float, on_timeout: str
    ) -> str:
        raise InterlockError("the spec asks for a drain, but the inventory has no loadbalancers")

    async def enable(self, host: Host, address: str, port: int | None, timeout: float) -> str:
        raise InterlockError("the spec asks for an enable, but the inventory has no loadbalancers")

    async def close(self) -> None:
        return None


class HaproxyBalancer:
    def __init__(self, clients: Sequence[RuntimeClient]) -> None:
        if not clients:
            raise InterlockError("no load balancers to drain on")
        self.clients = list(clients)

    async def drain(
        self, host: Host, address: str, port: int | None, timeout: float, on_timeout: str
    ) -> str:
        targets = await find_by_address(self.clients, address, port)
        report = await drain_targets(targets, timeout=timeout, on_timeout=OnTimeout(on_timeout))
        servers = ", ".join(
            f"{r.lb}:{r.backend}/{r.server} ({r.peak_sessions}→{r.after.sessions})"
            for r in report.results
        )
        note = f"; {report.warning}" if report.warning else ""
        forced = " (sessions cut)" if report.forced else ""
        return f"drained {servers} in {report.seconds:.2f} s{forced}{note}"

    async def enable(self, host: Host, address: str, port: int | None, timeout: float) -> str:
        targets = await find_by_address(self.clients, address, port)
        report = await enable_targets(targets, timeout=timeout)
        servers = ", ".join(f"{r.lb}:{r.backend}/{r.server}" for r in report.results)
        return f"enabled {servers}; UP after {report.seconds:.2f} s"

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
