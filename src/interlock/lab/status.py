"""How a running lab is doing: per host its processes, sshd, API health and haproxy's servers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from interlock.lab import network, processes
from interlock.lab.haproxy import server_stats
from interlock.lab.probe import api_health, ssh_banner
from interlock.lab.spec import LabHost
from interlock.lab.state import LabState
from interlock.lb.stats import StatRow


@dataclass(frozen=True)
class HostStatus:
    name: str
    role: str
    address: str
    pid: int | None
    running: bool
    sshd: str | None  # the server version it announced, None when it did not answer
    api_healthy: bool | None  # None: not a controller
    servers: tuple[StatRow, ...] | None  # None: not an lb host


@dataclass(frozen=True)
class LabStatus:
    state: LabState
    hosts: tuple[HostStatus, ...]

    @property
    def healthy(self) -> bool:
        return all(
            h.running
            and h.sshd is not None
            and h.api_healthy is not False
            and (h.servers is None or (h.servers and all(s.status == "UP" for s in h.servers)))
            for h in self.hosts
        )


async def gather_status(state: LabState) -> LabStatus:
    inodes = network.netns_inodes(h.netns for h in state.hosts)
    populated = set(processes.members(inodes).values())
    # Without the bridge, lab addresses would be routed off the machine: probe nothing then.
    reachable = network.link_exists(state.spec.bridge)

    async def one(host: LabHost) -> HostStatus:
        running = host.netns in populated
        probing = reachable and running
        banner = await ssh_banner(host.address) if probing else None
        healthy: bool | None = None
        if host.role == "controller":
            healthy = probing and await api_health(host.address)
        servers: tuple[StatRow, ...] | None = None
        if host.role == "lb":
            servers = await _servers(host) if probing else ()
        return HostStatus(
            name=host.name,
            role=host.role,
            address=host.address,
            pid=host.pid,
            running=running,
            sshd=banner,
            api_healthy=healthy,
            servers=servers,
        )

    return LabStatus(state, tuple(await asyncio.gather(*(one(h) for h in state.hosts))))


async def _servers(host: LabHost) -> tuple[StatRow, ...]:
    try:
        return tuple(await server_stats(host, timeout=2.0))
    except (OSError, TimeoutError, ValueError):
        return ()
