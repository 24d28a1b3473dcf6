"""The servers behind a set of haproxies: list them, and find which ones send traffic to a host."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from interlock.errors import InterlockError
from interlock.lb.runtime import RuntimeApiError, RuntimeClient
from interlock.lb.stats import ServerState, StatRow


@dataclass(frozen=True)
class ServerView:
    """One server on one LB, as `lb servers` shows it."""

    lb: str
    backend: str
    server: str
    address: str
    port: int | None
    status: str
    admin: str
    sessions: int
    queue: int
    weight: int


@dataclass(frozen=True)
class LbServers:
    """The servers of one LB, or why they could not be read."""

    lb: str
    address: str
    servers: tuple[ServerView, ...]
    error: str | None = None


@dataclass(frozen=True)
class Target:
    """One backend/server on one LB: the unit a drain or an enable acts on."""

    client: RuntimeClient
    backend_id: int
    backend: str
    server: str
    address: str
    port: int | None

    @property
    def lb(self) -> str:
        return self.client.name

    @property
    def label(self) -> str:
        return f"{self.client.name}:{self.backend}/{self.server}"


def join_servers(
    lb: str, states: Sequence[ServerState], stats: Sequence[StatRow]
) -> list[ServerView]:
    """Combine where a server points (servers state) with its traffic (stat), in state order."""
    by_name = {(row.proxy, row.name): row for row in stats if row.kind == "server"}
    views: list[ServerView] = []
    for state in states:
        row = by_name.get((state.backend, state.server))
        views.append(
            ServerView(
                lb=lb,
                backend=state.backend,
                server=state.server,
                address=state.address,
                port=state.port,
                status=row.status if row else "?",
                admin=state.admin,
                sessions=row.scur if row else 0,
                queue=(row.qcur or 0) if row else 0,
                weight=state.user_weight,
            )
        )
    return views


async def list_servers(
    clients: Sequence[RuntimeClient], backend: str | None = None
) -> list[LbServers]:
    """Every LB's servers, read concurrently; an LB that cannot be read carries its error."""

    async def one(client: RuntimeClient) -> LbServers:
        try:
            states, stats = await asyncio.gather(
                client.show_servers_state(backend), client.show_stat()
            )
        except InterlockError as exc:
            return LbServers(client.name, client.opener.address, (), str(exc))
        return LbServers(
            client.name, client.opener.address, tuple(join_servers(client.name, states, stats))
        )

    return list(await asyncio.gather(*(one(client) for client in clients)))


async def find_server(clients: Sequence[RuntimeClient], backend: str, server: str) -> list[Target]:
    """Every LB that has `backend/server`; an error if none has it or one cannot be asked."""
    found = [
        target
        for target in await all_targets(clients, backend, f"{backend}/{server}")
        if target.server == server
    ]
    if not found:
        names = ", ".join(client.name for client in clients)
        raise InterlockError(f"no load balancer has server {backend}/{server} (asked {names})")
    return found


async def find_by_address(
    clients: Sequence[RuntimeClient], address: str, port: int | None = None
) -> list[Target]:
    """Every backend/server on every LB that points at `address` (and `port` when given)."""
    what = address if port is None else f"{address}:{port}"
    found = [
        target
        for target in await all_targets(clients, None, what)
        if same_address(target.address, address) and (port is None or target.port == port)
    ]
    if not found:
        names = ", ".join(client.name for client in clients)
        raise InterlockError(f"no load balancer has a server at {what} (asked {names})")
    return found


async def all_targets(
    clients: Sequence[RuntimeClient], backend: str | None, wanted: str
) -> list[Target]:
    """All servers of all LBs. Fails closed: an LB we cannot ask might send traffic to `wanted`."""
    if not clients:
        raise InterlockError("no load balancers given")
    replies = await asyncio.gather(
        *(client.show_servers_state(backend) for client in clients), return_exceptions=True
    )
    targets: list[Target] = []
    problems: list[str] = []
    for client, reply in zip(clients, replies, strict=True):
        if isinstance(reply, RuntimeApiError) and reply.reply.startswith("Can't find backend"):
            continue  # this LB does not have the backend at all: it sends nothing there
        if isinstance(reply, BaseException):
            if not isinstance(reply, InterlockError):
                raise reply
            problems.append(str(reply))
            continue
        targets.extend(
            Target(client, state.backend_id, state.backend, state.server, state.address, state.port)
            for state in reply
        )
    if problems:
        raise InterlockError(
            f"cannot tell which load balancers send traffic to {wanted}: " + "; ".join(problems)
        )
    return targets


def same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b
