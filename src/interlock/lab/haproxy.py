"""The lab's load balancer: haproxy's config for an lb host, and its servers read back."""

from __future__ import annotations

from collections.abc import Sequence

from interlock.lab.spec import ADMIN_SOCKET, API_PORT, LB_ADMIN_PORT, LB_PORT, LabHost
from interlock.lb.runtime import RuntimeClient, TcpOpener
from interlock.lb.stats import StatRow

CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
PIDFILE = "/run/haproxy.pid"
BACKEND = "api"


def render_haproxy_config(lb: LabHost, controllers: Sequence[LabHost]) -> str:
    servers = [f"    server {c.name} {c.address}:{API_PORT}" for c in controllers]
    return "\n".join(
        [
            f"# haproxy of interlock lab host {lb.name}",
            "global",
            "    maxconn 4096",
            f"    stats socket {ADMIN_SOCKET} mode 600 level admin",
            f"    stats socket ipv4@{lb.address}:{LB_ADMIN_PORT} level admin",
            "    stats timeout 30s",
            "",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout http-keep-alive 10s",
            "    retries 3",
            "    option redispatch",
            "",
            "frontend api",
            f"    bind {lb.address}:{LB_PORT}",
            f"    default_backend {BACKEND}",
            "",
            f"backend {BACKEND}",
            "    balance roundrobin",
            "    option httpchk GET /health",
            "    default-server check inter 1s fall 2 rise 2",
            *servers,
            "",
        ]
    )


async def server_stats(lb: LabHost, timeout: float = 3.0) -> list[StatRow]:
    """The servers of an lb host's haproxy, through its TCP admin socket."""
    client = RuntimeClient(
        lb.name, TcpOpener(lb.address, LB_ADMIN_PORT), connect_timeout=timeout, read_timeout=timeout
    )
    return [row for row in await client.show_stat() if row.kind == "server"]
