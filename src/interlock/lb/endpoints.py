"""Runtime-API clients for the haproxies named on the command line or in an inventory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from interlock.errors import InterlockError, UsageError
from interlock.fleet.inventory import Inventory, LoadBalancer
from interlock.fleet.transport import SshTransport
from interlock.lb.runtime import RuntimeClient, SshOpener, TcpOpener, UnixSocketOpener

SSH_CONNECT_TIMEOUT = 30.0


@dataclass
class Endpoints:
    """The clients of one run, and the SSH connections they share; close it when done."""

    clients: list[RuntimeClient]
    transport: SshTransport | None = None

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.transport is not None:
            await self.transport.close()

    async def __aenter__(self) -> Endpoints:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def from_socket(path: str, *, name: str = "local") -> Endpoints:
    return Endpoints([RuntimeClient(name, UnixSocketOpener(path))])


def from_tcp(address: str, *, name: str | None = None) -> Endpoints:
    return Endpoints([RuntimeClient(name or address, TcpOpener.parse(address))])


def from_inventory(inventory: Inventory, names: Sequence[str] = ()) -> Endpoints:
    """Clients for the inventory's load balancers (all of them, or those named)."""
    where = inventory.path or "inventory"
    if not inventory.loadbalancers:
        raise UsageError(f"{where} lists no loadbalancers")
    unknown = [name for name in names if name not in inventory.loadbalancers]
    if unknown:
        known = ", ".join(sorted(inventory.loadbalancers))
        raise UsageError(f"{where} has no load balancer {', '.join(unknown)} (it has {known})")
    chosen = [inventory.loadbalancers[name] for name in names] or list(
        inventory.loadbalancers.values()
    )
    transport: SshTransport | None = None
    clients: list[RuntimeClient] = []
    for lb in chosen:
        if lb.host is not None:
            transport = transport or SshTransport.for_inventory(inventory)
            clients.append(remote_client(inventory, lb, lb.host, transport))
        elif lb.tcp is not None:
            clients.append(RuntimeClient(lb.name, TcpOpener.parse(lb.tcp)))
        elif lb.socket is not None:
            clients.append(RuntimeClient(lb.name, UnixSocketOpener(lb.socket)))
        else:
            raise InterlockError(f"{where}: load balancer {lb.name} has no socket or tcp")
    return Endpoints(clients, transport)


def remote_client(
    inventory: Inventory, lb: LoadBalancer, host_name: str, transport: SshTransport
) -> RuntimeClient:
    """The admin socket of `lb` on inventory host `host_name`, over the run's SSH connection."""
    host = inventory.hosts.get(host_name)
    if host is None:
        raise InterlockError(
            f"{inventory.path or 'inventory'}: load balancer {lb.name} is on host {host_name}, "
            "which is not in the inventory"
        )
    if lb.socket is None:
        raise InterlockError(f"{inventory.path}: load balancer {lb.name} needs a socket path")
    opener = SshOpener(
        host.name, lambda: transport.connection(host), lb.socket, owns_connection=False
    )
    # The first command also opens the SSH connection (with the transport's own retries).
    return RuntimeClient(lb.name, opener, connect_timeout=SSH_CONNECT_TIMEOUT)
