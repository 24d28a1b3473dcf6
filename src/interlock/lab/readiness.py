"""Waiting for a booting lab: every sshd answers, every API is healthy, every haproxy sees UP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from interlock.lab import processes
from interlock.lab.errors import LabError
from interlock.lab.haproxy import server_stats
from interlock.lab.image import hosts_root
from interlock.lab.probe import SSH_PORT, api_health, listening_ports, ssh_banner
from interlock.lab.spec import API_PORT, LB_ADMIN_PORT
from interlock.lab.state import LabState

POLL = 0.05


async def wait_ready(state: LabState, logs: Path, deadline: float) -> None:
    """Return once every host is ready; raise naming the host (and quoting its log) otherwise.

    A port is probed over the network only once it listens inside the host's namespace: a
    connection to an address its host has not configured yet would stall on ARP for a second.
    """
    pending_ssh = {host.name: host for host in state.hosts}
    pending_api = {host.name: host for host in state.hosts if host.role == "controller"}
    pending_lb = {host.name: host for host in state.hosts if host.role == "lb"}
    controllers = len(pending_api)
    last_lb: dict[str, str] = {}
    while pending_ssh or pending_api or pending_lb:
        for host in state.hosts:
            if host.pid is not None and not processes.alive(host.pid):
                tail = log_tail(state, logs, host.name)
                raise LabError(f"{host.name} stopped while booting:\n{tail}")
        if time.monotonic() > deadline:
            waiting = sorted({*pending_ssh, *pending_api, *pending_lb})
            details = "".join(f"{name}: {last_lb[name]}\n" for name in waiting if name in last_lb)
            tail = log_tail(state, logs, waiting[0])
            raise LabError(f"not ready in time: {', '.join(waiting)}\n{details}{tail}")
        listening = {h.name: listening_ports(h.pid) for h in state.hosts if h.pid is not None}
        ssh_ready = [h for h in pending_ssh.values() if SSH_PORT in listening.get(h.name, ())]
        api_ready = [h for h in pending_api.values() if API_PORT in listening.get(h.name, ())]
        banners = await asyncio.gather(*(ssh_banner(h.address) for h in ssh_ready))
        healthy = await asyncio.gather(*(api_health(h.address) for h in api_ready))
        for host, banner in zip(ssh_ready, banners, strict=True):
            if banner is not None:
                del pending_ssh[host.name]
        for host, ok in zip(api_ready, healthy, strict=True):
            if ok:
                del pending_api[host.name]
        for name, lb in list(pending_lb.items()):
            if LB_ADMIN_PORT not in listening.get(name, ()):
                continue
            try:
                servers = await server_stats(lb, timeout=1.0)
            except (OSError, TimeoutError, ValueError) as exc:
                last_lb[name] = f"admin socket: {exc or type(exc).__name__}"
                continue
            last_lb[name] = "haproxy servers: " + ", ".join(f"{s.name} {s.status}" for s in servers)
            if len(servers) == controllers and all(s.status == "UP" for s in servers):
                del pending_lb[name]
        if pending_ssh or pending_api or pending_lb:
            await asyncio.sleep(POLL)


def log_tail(state: LabState, logs: Path, host: str, lines: int = 15) -> str:
    """The end of a host's boot log and sshd log, for error messages."""
    parts = []
    sshd_log = hosts_root(state.spec.directory) / host / "upper" / "var-log" / "sshd.log"
    for path in (logs / f"{host}.log", sshd_log):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"--- {path}\n{tail}" if tail else f"--- {path} (empty)")
    return "\n".join(parts) or "(no log)"
