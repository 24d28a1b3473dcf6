"""A small etcd v3 client over etcd's own JSON gateway (`POST /v3/...`, keys and values base64).

Why the gateway: etcd 3.4 serves it on the client port by default, so plain HTTP/1.1 from the
standard library is enough: no compiled gRPC stack to install or pin. Every call has a timeout;
several endpoints are tried in turn, so one member down costs one timeout at most once (the next
call starts with the member that answered last).

A member that has lost quorum does not answer linearizable requests: it holds them until our
timeout, which then counts as "unavailable" and moves on to the next member.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from interlock.errors import InterlockError, UsageError

DEFAULT_PORT = 2379
CALL_TIMEOUT = 2.0
MAX_BODY = 16 * 1024 * 1024
SCHEMES = {"etcd": False, "etcds": True}
# gRPC codes that mean "this member cannot serve now": try another one.
_RETRY_CODES = {1, 4, 8, 14}


class EtcdUnavailable(InterlockError):
    """No endpoint answered in time (all down, or no quorum)."""


class EtcdError(InterlockError):
    """etcd answered with an error."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EtcdUrl:
    endpoints: tuple[Endpoint, ...]
    tls: bool
    ttl: int | None = None  # ?ttl=SECONDS: the slot lease's time to live

    def __str__(self) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(str(e) for e in self.endpoints)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise UsageError("coordination: no etcd endpoint given")


def parse_url(text: str) -> EtcdUrl:
    """`etcd://host:2379,host2:2379[?ttl=10]` (plain HTTP) or `etcds://…` (HTTPS, system CAs)."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise UsageError(
            f"coordination {text!r}: expected etcd://HOST:PORT[,HOST:PORT…][?ttl=SECONDS] "
            "(or etcds:// for TLS), or `local`"
        )
    rest, _, query = rest.partition("?")
    ttl = None
    if query:
        name, _, value = query.partition("=")
        if name != "ttl" or not value.isdigit() or not 2 <= int(value) <= 3600:
            raise UsageError(f"coordination {text!r}: the only option is ttl=SECONDS (2-3600)")
        ttl = int(value)
    rest = rest.rstrip("/")
    if not rest or "/" in rest or "@" in rest:
        raise UsageError(f"coordination {text!r}: give only host:port pairs after {scheme}://")
    endpoints = []
    for part in rest.split(","):
        try:
            parsed = urllib.parse.urlsplit("//" + part)
            port = parsed.port or DEFAULT_PORT
        except ValueError as exc:
            raise UsageError(f"coordination {text!r}: {part!r}: {exc}") from None
        if not parsed.hostname:
            raise UsageError(f"coordination {text!r}: {part!r} names no host")
        endpoints.append(Endpoint(parsed.hostname, port))
    return EtcdUrl(tuple(endpoints), SCHEMES[scheme], ttl)


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with `prefix` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return b64(bytes(raw))
        raw.pop()
    return b64(b"\0")


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def key_values(response: dict[str, Any]) -> list[KeyValue]:
    """The `kvs` of a range response (zero-valued fields are left out by the gateway)."""
    return [
        KeyValue(
            unb64(kv["key"]).decode(errors="replace"),
            unb64(kv.get("value", "")),
            int(kv.get("create_revision", 0)),
            int(kv.get("mod_revision", 0)),
            int(kv.get("lease", 0)),
        )
        for kv in response.get("kvs", [])
    ]


def keepalive_ttl(answer: dict[str, Any]) -> int:
    """A keepalive's new TTL; the gateway leaves TTL out (0) when the lease no longer exists."""
    result = answer.get("result", {})
    return int(result.get("TTL", 0)) if isinstance(result, dict) else 0


def txn_succeeded(answer: dict[str, Any]) -> bool:
    """Whether a transaction's compares held (`succeeded` is left out when false)."""
    return answer.get("succeeded") is True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class EtcdClient:
    def __init__(self, url: EtcdUrl, timeout: float = CALL_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.preferred = 0
        self.idle: dict[Endpoint, list[_Connection]] = {}
        self.tls = ssl.create_default_context() if url.tls else None

    async def close(self) -> None:
        for pool in self.idle.values():
            for conn in pool:
                conn.close()
        self.idle.clear()

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path` on the first member that answers; EtcdUnavailable if none."""
        problems: list[str] = []
        count = len(self.url.endpoints)
        first = self.preferred  # other calls may move it meanwhile: try each member once
        for offset in range(count):
            index = (first + offset) % count
            endpoint = self.url.endpoints[index]
            try:
                async with asyncio.timeout(self.timeout):
                    status, answer = await self._post(endpoint, path, body)
            except (OSError, TimeoutError, EOFError, ValueError) as exc:
                problems.append(f"{endpoint}: {_describe(exc)}")
                continue
            if not isinstance(answer, dict):
                problems.append(f"{endpoint}: not a JSON object")
                continue
            code = int(answer.get("code", 0))
            if status >= 500 or code in _RETRY_CODES:
                problems.append(f"{endpoint}: {answer.get('message', f'HTTP {status}')}")
                continue
            if status != 200:
                raise EtcdError(f"etcd {endpoint} {path}: {answer.get('message', status)}")
            self.preferred = index
            result: dict[str, Any] = answer
            return result
        raise EtcdUnavailable(f"no etcd member answered ({'; '.join(problems)})")

    async def _post(self, endpoint: Endpoint, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        pool = self.idle.setdefault(endpoint, [])
        conn = pool.pop() if pool else None
        if conn is None:
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=self.tls
            )
            conn = _Connection(reader, writer)
        try:
            payload = json.dumps(body).encode()
            conn.writer.write(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {endpoint}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                ).encode()
                + payload
            )
            await conn.writer.drain()
            status, keep, data = await read_response(conn.reader)
        except BaseException:
            conn.close()
            raise
        if keep:
            pool.append(conn)
        else:
            conn.close()
        return status, json.loads(data) if data else {}

    # --- the calls interlock uses -------------------------------------------------------------

    async def range(
        self, key: str, *, prefix: bool = False, count_only: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        if count_only:
            body["count_only"] = True
        return await self.call("/v3/kv/range", body)

    async def get(self, key: str) -> KeyValue | None:
        found = key_values(await self.range(key))
        return found[0] if found else None

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        answer = await self.call(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []}
        )
        return txn_succeeded(answer), answer

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        await self.call("/v3/kv/put", body)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        answer = await self.call("/v3/kv/deleterange", body)
        return int(answer.get("deleted", 0))

    async def grant(self, ttl: int) -> int:
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if answer.get("error"):
            raise EtcdError(f"etcd refused a lease: {answer['error']}")
        return int(answer["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew the lease; its new TTL, or 0 when it has already expired."""
        return keepalive_ttl(await self.call("/v3/lease/keepalive", {"ID": str(lease)}))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise EOFError("connection closed")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        data = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            if len(data) + size > MAX_BODY:
                raise ValueError("answer too large")
            data += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, keep, bytes(data)
    length = int(headers.get("content-length", "-1"))
    if length < 0:
        return status, False, await reader.read(MAX_BODY)
    if length > MAX_BODY:
        raise ValueError("answer too large")
    return status, keep, await reader.readexactly(length)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
