"""An HTTP load generator that counts every failed request, for drain and rollout tests.

N clients each keep HTTP/1.1 connections alive and send GET requests back to back, taking the
URLs in turn. A failure is never retried: it is counted by kind, the connection is dropped and
the client reconnects for its next request, so a test can tell "0 failed" from "nobody noticed".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from interlock.errors import InterlockError

# Failure kinds.
CONNECT_REFUSED = "connect_refused"
CONNECT_ERROR = "connect_error"
RESET = "reset"  # connection reset or closed before the whole response arrived
TIMEOUT = "timeout"
HTTP_5XX = "http_5xx"
HTTP_OTHER = "http_other"  # any status outside 2xx and 5xx
PROTOCOL = "protocol"  # a reply that is not HTTP/1.x

MAX_HEADER_BYTES = 64 * 1024
# After a failed connect a client pauses so a refused port does not become a busy loop.
RECONNECT_PAUSE = 0.02


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    request: bytes  # the whole GET request, prepared once

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InterlockError(f"load generator needs http://HOST[:PORT]/PATH URLs, got {url!r}")
        port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = parts.netloc.rpartition("@")[2]
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            "User-Agent: interlock-load\r\nAccept: */*\r\n\r\n"
        ).encode()
        return cls(parts.hostname, port, request)


@dataclass(frozen=True)
class LoadReport:
    sent: int
    ok: int
    failed: int
    failures: Mapping[str, int]
    statuses: Mapping[int, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    duration: float
    requests_per_second: float


@dataclass
class LoadTally:
    """Running counts, shared by the clients of one run (one event loop: no locking needed)."""

    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def report(self, now: float | None = None) -> LoadReport:
        duration = (time.monotonic() if now is None else now) - self.started
        ordered = sorted(self.latencies)
        failed = sum(self.failures.values())
        done = self.ok + failed
        return LoadReport(
            sent=self.sent,
            ok=self.ok,
            failed=failed,
            failures=dict(self.failures),
            statuses=dict(self.statuses),
            p50_ms=percentile(ordered, 50) * 1000,
            p95_ms=percentile(ordered, 95) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else 0.0,
            duration=duration,
            requests_per_second=done / duration if duration > 0 else 0.0,
        )


class RequestFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


async def run_load(
    urls: Sequence[str],
    *,
    concurrency: int,
    duration: float | None,
    stop_event: asyncio.Event | None = None,
    timeout: float = 5.0,
    tally: LoadTally | None = None,
) -> LoadReport:
    """Send requests until `duration` seconds pass or `stop_event` is set, then report.

    In-flight requests at the end are allowed to finish (within `timeout`) so none is counted
    as failed only because the run stopped.
    """
    endpoints = [Endpoint.parse(url) for url in urls]
    if not endpoints:
        raise InterlockError("load generator needs at least one URL")
    if concurrency < 1:
        raise InterlockError(f"concurrency must be at least 1, got {concurrency}")
    if duration is None and stop_event is None:
        raise InterlockError("load generator needs a duration or a stop event")
    stop = stop_event or asyncio.Event()
    tally = tally or LoadTally()
    tally.started = time.monotonic()
    turn = itertools.cycle(range(len(endpoints)))

    async def client() -> None:
        connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while not stop.is_set():
                index = next(turn)
                endpoint = endpoints[index]
                tally.sent += 1
                began = time.monotonic()
                try:
                    async with asyncio.timeout(timeout):
                        status, keep = await one_request(endpoint, connections, index)
                except (RequestFailed, TimeoutError) as exc:
                    kind = exc.kind if isinstance(exc, RequestFailed) else TIMEOUT
                    tally.failures[kind] += 1
                    drop(connections, index)
                    if kind in (CONNECT_REFUSED, CONNECT_ERROR):
                        await asyncio.sleep(RECONNECT_PAUSE)
                    continue
                tally.statuses[status] += 1
                if not keep:
                    drop(connections, index)
                if 200 <= status < 300:
                    tally.ok += 1
                    tally.latencies.append(time.monotonic() - began)
                else:
                    tally.failures[HTTP_5XX if 500 <= status < 600 else HTTP_OTHER] += 1
        finally:
            for index in list(connections):
                drop(connections, index)

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    if duration is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    stop.set()
    ended = time.monotonic()
    await asyncio.gather(*tasks)
    return tally.report(ended)


async def one_request(
    endpoint: Endpoint,
    connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    index: int,
) -> tuple[int, bool]:
    """One GET on the client's connection to `endpoint`: (status, connection reusable)."""
    if index not in connections:
        try:
            connections[index] = await asyncio.open_connection(endpoint.host, endpoint.port)
        except ConnectionRefusedError:
            raise RequestFailed(CONNECT_REFUSED) from None
        except OSError:
            raise RequestFailed(CONNECT_ERROR) from None
    reader, writer = connections[index]
    try:
        writer.write(endpoint.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, keep = parse_head(head)
        await read_body(reader, headers)
    except asyncio.LimitOverrunError:
        raise RequestFailed(PROTOCOL) from None
    except (asyncio.IncompleteReadError, OSError):
        raise RequestFailed(RESET) from None
    return status, keep


def parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise RequestFailed(PROTOCOL)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return int(code), headers, keep


async def read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise RequestFailed(PROTOCOL) from None
            if size == 0:
                await skip_trailers(reader)
                return
            await reader.readexactly(size + 2)
    length = headers.get("content-length")
    if length is None:
        raise RequestFailed(PROTOCOL)
    if not length.isdigit():
        raise RequestFailed(PROTOCOL)
    await reader.readexactly(int(length))


async def skip_trailers(reader: asyncio.StreamReader) -> None:
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass


def drop(
    connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]], index: int
) -> None:
    pair = connections.pop(index, None)
    if pair is not None:
        pair[1].close()


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


class LoadGenerator:
    """Runs `run_load` in a background thread with its own event loop, for tests and demos.

    with LoadGenerator(urls, concurrency=20) as load:
        ...  # drain, stop, upgrade
    report = load.report()
    """

    def __init__(self, urls: Sequence[str], *, concurrency: int = 20, timeout: float = 5.0) -> None:
        for url in urls:
            Endpoint.parse(url)  # a bad URL fails here, not in the thread
        self.urls = list(urls)
        self.concurrency = concurrency
        self.timeout = timeout
        self._tally = LoadTally()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._report: LoadReport | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._run, name="interlock-load", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        if self._thread is None:
            raise InterlockError("load generator was not started")
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.report()

    def snapshot(self) -> LoadReport:
        """Counts so far, while the load runs (read from another thread: approximate)."""
        return self._tally.report()

    def report(self) -> LoadReport:
        if self._report is None:
            raise InterlockError("load generator is still running: report() after it stops")
        return self._report

    def _run(self) -> None:
        async def main() -> LoadReport:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            return await run_load(
                self.urls,
                concurrency=self.concurrency,
                duration=None,
                stop_event=self._stop,
                timeout=self.timeout,
                tally=self._tally,
            )

        try:
            self._report = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
        finally:
            self._ready.set()
