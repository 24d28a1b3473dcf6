"""Probes: one question with a yes/no answer and a reason, asked over HTTP, TCP or a command.

HTTP requests are HTTP/1.0 with `Connection: close`, so the reply is everything until the server
closes and never chunked; the parsers of what comes back (status line, RabbitMQ's `/api/queues`,
Prometheus's `/api/v1/alerts`) are pure functions tested on captured replies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import Transport
from interlock.fleet.transport.errors import TransportError
from interlock.rollout.plan import (
    CommandProbe,
    HttpProbe,
    Probe,
    RabbitQueuesProbe,
    TcpProbe,
)

MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes


class ReplyError(ValueError):
    """A reply that is not what the protocol promises."""


def parse_http_reply(raw: bytes) -> HttpReply:
    """Status and body of a whole HTTP/1.x response to an HTTP/1.0 request (never chunked)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ReplyError("no end of headers in the HTTP reply")
    lines = head.decode("iso-8859-1").split("\r\n")
    match = re.fullmatch(r"HTTP/\d\.\d (\d{3})(?: .*)?", lines[0])
    if not match:
        raise ReplyError(f"not an HTTP status line: {lines[0][:80]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            body = body[: int(value.strip())]
    return HttpReply(int(match[1]), body)


async def http_get(
    url: str, *, timeout: float, user: str | None = None, password: str | None = None
) -> HttpReply:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplyError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = parts.netloc.rpartition("@")[2]
    request = [
        f"GET {target} HTTP/1.0",
        f"Host: {host_header}",
        "User-Agent: interlock-rollout",
        "Accept: */*",
        "Connection: close",
    ]
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.append(f"Authorization: Basic {token}")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
        try:
            writer.write(("\r\n".join(request) + "\r\n\r\n").encode())
            await writer.drain()
            chunks: list[bytes] = []
            size = 0
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    raise ReplyError(f"reply from {url} larger than {MAX_BODY} bytes")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    return parse_http_reply(b"".join(chunks))


# --- RabbitMQ and Prometheus -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    total: int
    deepest: tuple[tuple[str, int], ...]  # (vhost/queue, messages), deepest first


def parse_queues(text: str, vhost: str | None = None, pattern: str | None = None) -> QueueDepth:
    """Messages (ready + unacknowledged) in RabbitMQ's `GET /api/queues` reply."""
    try:
        queues = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"not JSON: {exc}") from None
    if not isinstance(queues, list):
        raise ReplyError("expected a JSON list of queues")
    matcher = re.compile(pattern) if pattern else None
    depths: list[tuple[str, int]] = []
    for queue in queues:
        if not isinstance(queue, dict) or not isinstance(queue.get("name"), str):
            raise ReplyError("a queue without a name")
        if vhost is not None and queue.get("vhost") != vhost:
            continue
        if matcher and not matcher.search(queue["name"]):
            continue
        # A queue whose stats are not collected yet lacks the totals; its parts may be there.
        messages = queue.get("messages")
        if not isinstance(messages, int):
            ready = queue.get("messages_ready")
            unacked = queue.get("messages_unacknowledged")
            messages = (ready if isinstance(ready, int) else 0) + (
                unacked if isinstance(unacked, int) else 0
            )
        depths.append((f"{queue.get('vhost', '?')}/{queue['name']}", messages))
    depths.sort(key=lambda item: -item[1])
    return QueueDepth(sum(depth for _, depth in depths), tuple(depths[:5]))


def parse_firing_alerts(text: str, pattern: str) -> list[str]:
    """Names of firing alerts (Prometheus `GET /api/v1/alerts`) whose name matches `pattern`."""
    try:
        reply = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"not JSON: {exc}") from None
    if not isinstance(reply, dict) or reply.get("status") != "success":
        raise ReplyError(f"Prometheus did not answer success: {str(reply)[:200]}")
    alerts = reply.get("data", {}).get("alerts")
    if not isinstance(alerts, list):
        raise ReplyError("no data.alerts list in the reply")
    matcher = re.compile(pattern)
    names: list[str] = []
    for alert in alerts:
        if not isinstance(alert, dict) or alert.get("state") != "firing":
            continue
        name = alert.get("labels", {}).get("alertname", "")
        if isinstance(name, str) and matcher.fullmatch(name) and name not in names:
            names.append(name)
    return names


# --- asking --------------------------------------------------------------------------------------


class ProbeRunner:
    """Asks probes: HTTP and TCP from this machine, commands through the transport."""

    def __init__(self, transport: Transport, local: Transport | None = None) -> None:
        self.transport = transport
        self.local = local or transport

    async def ask(self, probe: Probe, host: Host | None) -> ProbeResult:
        try:
            return await self._ask(probe, host)
        except TimeoutError:
            return ProbeResult(False, f"{probe.describe()}: no answer within {probe.timeout:g} s")
        except (OSError, ReplyError, TransportError) as exc:
            return ProbeResult(False, f"{probe.describe()}: {exc}")

    async def _ask(self, probe: Probe, host: Host | None) -> ProbeResult:
        if isinstance(probe, HttpProbe):
            reply = await http_get(probe.url, timeout=probe.timeout)
            if reply.status not in probe.expect:
                return ProbeResult(False, f"GET {probe.url}: HTTP {reply.status}")
            if probe.contains and probe.contains.encode() not in reply.body:
                return ProbeResult(False, f"GET {probe.url}: {probe.contains!r} not in the reply")
            return ProbeResult(True, f"GET {probe.url}: HTTP {reply.status}")
        if isinstance(probe, TcpProbe):
            async with asyncio.timeout(probe.timeout):
                _, writer = await asyncio.open_connection(probe.address, probe.port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return ProbeResult(True, f"TCP {probe.address}:{probe.port} accepts connections")
        if isinstance(probe, CommandProbe):
            # Without a host (a pre-gate with no `host:`) it runs on this machine.
            transport, target = (self.local, LOCAL_HOST) if host is None else (self.transport, host)
            result = await transport.run(target, probe.argv, timeout=probe.timeout)
            if result.ok:
                return ProbeResult(True, f"{probe.describe()}: exit 0")
            tail = result.stderr.decode("utf-8", "replace").strip()[-200:]
            return ProbeResult(
                False,
                f"{probe.describe()}: exit {result.exit_status}" + (f": {tail}" if tail else ""),
            )
        if isinstance(probe, RabbitQueuesProbe):
            password = None
            if probe.password_file:
                password = Path(probe.password_file).read_text(encoding="utf-8").strip()
            url = probe.url.rstrip("/") + "/api/queues"
            reply = await http_get(url, timeout=probe.timeout, user=probe.user, password=password)
            if reply.status != 200:
                return ProbeResult(False, f"GET {url}: HTTP {reply.status}")
            depth = parse_queues(reply.body.decode("utf-8", "replace"), probe.vhost, probe.pattern)
            deepest = ", ".join(f"{name} {count}" for name, count in depth.deepest[:3])
            verdict = depth.total <= probe.max_messages
            return ProbeResult(
                verdict,
                f"RabbitMQ queues hold {depth.total} messages (limit {probe.max_messages})"
                + (f"; deepest: {deepest}" if deepest and not verdict else ""),
            )
        url = probe.url.rstrip("/") + "/api/v1/alerts"
        reply = await http_get(url, timeout=probe.timeout)
        if reply.status != 200:
            return ProbeResult(False, f"GET {url}: HTTP {reply.status}")
        firing = parse_firing_alerts(reply.body.decode("utf-8", "replace"), probe.pattern)
        if firing:
            return ProbeResult(False, "firing: " + ", ".join(firing))
        return ProbeResult(True, f"no firing alert matches /{probe.pattern}/")


LOCAL_HOST = Host(name="localhost", address="127.0.0.1")
