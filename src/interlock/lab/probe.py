"""Is a lab host ready? Its sshd's banner and its API's /health: requests and pure parsers."""

from __future__ import annotations

import asyncio

from interlock.lab.spec import API_PORT

SSH_PORT = 22
TCP_LISTEN = "0A"


def parse_listening_ports(text: str) -> set[int]:
    """Ports in LISTEN state from /proc/PID/net/tcp (addresses are hex `ADDR:PORT`)."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == TCP_LISTEN:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports(pid: int) -> set[int]:
    """TCP ports listening in the network namespace of host-side `pid`, read without any traffic.

    Probing an address before its host has configured it would stall the caller's first
    connection on ARP resolution for a second; this tells when a probe can answer at once.
    """
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as handle:
            return parse_listening_ports(handle.read())
    except OSError:
        return set()


def parse_ssh_banner(line: bytes) -> str | None:
    """The server's software version from its identification line (RFC 4253 §4.2), or None."""
    text = line.decode("ascii", errors="replace").strip()
    if not text.startswith("SSH-2.0-"):
        return None
    return text[len("SSH-2.0-") :].split(" ", 1)[0]


def health_request(address: str) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()


def parse_http_status(reply: bytes) -> int | None:
    """The status code of an HTTP/1.x reply, or None when it is not one."""
    first = reply.split(b"\r\n", 1)[0].decode("ascii", errors="replace").split()
    if len(first) < 2 or not first[0].startswith("HTTP/1.") or not first[1].isdigit():
        return None
    return int(first[1])


async def ssh_banner(address: str, timeout: float = 2.0) -> str | None:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(address, SSH_PORT)
        try:
            return await reader.readline()
        finally:
            writer.close()

    try:
        return parse_ssh_banner(await asyncio.wait_for(exchange(), timeout))
    except (OSError, TimeoutError):
        return None


async def api_health(address: str, port: int = API_PORT, timeout: float = 2.0) -> bool:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(address, port)
        try:
            writer.write(health_request(address))
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    try:
        return parse_http_status(await asyncio.wait_for(exchange(), timeout)) == 200
    except (OSError, TimeoutError):
        return False
