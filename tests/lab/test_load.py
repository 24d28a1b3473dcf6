"""The load generator against the real lab API service and against servers that misbehave."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import interlock
from interlock.errors import InterlockError
from interlock.lab.load import (
    CONNECT_REFUSED,
    HTTP_5XX,
    HTTP_OTHER,
    PROTOCOL,
    RESET,
    TIMEOUT,
    Endpoint,
    LoadGenerator,
    percentile,
    run_load,
)

LAB_API = Path(interlock.__file__).parent / "lab" / "files" / "lab_api.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The lab API service on a loopback port, killed by its PID afterwards."""
    port = free_port()
    pidfile = tmp_path / "api.pid"
    process = subprocess.Popen(
        [
            "/usr/bin/python3",
            "-I",
            str(LAB_API),
            "--bind",
            f"127.0.0.1:{port}",
            "--delay-ms",
            "2",
            "--pidfile",
            str(pidfile),
            "--name",
            "api",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not pidfile.exists():
            assert process.poll() is None and time.monotonic() < deadline, "lab_api did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/v1/status"
    finally:
        process.kill()
        process.wait(timeout=10)


def test_counts_every_request_against_the_lab_api(api_url: str) -> None:
    report = asyncio.run(run_load([api_url], concurrency=4, duration=1.0))
    assert report.ok > 0 and report.failed == 0 and report.failures == {}
    assert report.sent == report.ok
    assert report.statuses == {200: report.ok}
    assert 0 < report.p50_ms <= report.p95_ms <= report.p99_ms <= report.max_ms
    assert report.requests_per_second > 0


def test_urls_are_taken_in_turn_and_refusals_counted(api_url: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}/"
    report = asyncio.run(run_load([api_url, refused], concurrency=2, duration=1.0))
    assert report.ok > 0
    assert report.failures.get(CONNECT_REFUSED, 0) > 0
    assert set(report.failures) == {CONNECT_REFUSED}
    assert report.sent == report.ok + report.failed


async def misbehaving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server whose answer depends on the path: the failure kinds, one per path."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1]
            if path == b"/503":
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            elif path == b"/404":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
            elif path == b"/reset":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut")
                await writer.drain()
                return
            elif path == b"/hang":
                await asyncio.sleep(3600)
            elif path == b"/garbage":
                writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            elif path == b"/chunked":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
                )
            elif path == b"/close":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
                return
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


def run_against_misbehaving(paths: list[str], *, timeout: float = 5.0) -> dict[str, int]:
    async def scenario() -> dict[str, int]:
        server = await asyncio.start_server(misbehaving, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            urls = [f"http://127.0.0.1:{port}{path}" for path in paths]
            report = await run_load(urls, concurrency=2, duration=0.5, timeout=timeout)
        finally:
            server.close()
        assert report.sent == report.ok + report.failed
        return {"ok": report.ok, **report.failures}

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/503", HTTP_5XX), ("/404", HTTP_OTHER), ("/reset", RESET), ("/garbage", PROTOCOL)],
)
def test_failure_kinds(path: str, kind: str) -> None:
    counts = run_against_misbehaving([path])
    assert counts[kind] > 0
    assert set(counts) == {"ok", kind} and counts["ok"] == 0


def test_a_request_without_answer_times_out() -> None:
    counts = run_against_misbehaving(["/hang"], timeout=0.2)
    assert counts[TIMEOUT] > 0 and counts["ok"] == 0


def test_chunked_and_closing_replies_are_successes() -> None:
    counts = run_against_misbehaving(["/chunked", "/close"])
    assert counts["ok"] > 0 and set(counts) == {"ok"}


def test_load_generator_runs_in_the_background(api_url: str) -> None:
    with LoadGenerator([api_url], concurrency=3) as load:
        with pytest.raises(InterlockError, match="still running"):
            load.report()
        deadline = time.monotonic() + 10
        while load.snapshot().ok < 20:
            assert time.monotonic() < deadline, "no requests succeeded"
            time.sleep(0.05)
    report = load.report()
    assert report.ok >= 20 and report.failed == 0
    assert report.sent == report.ok


def test_bad_arguments() -> None:
    with pytest.raises(InterlockError, match="http://"):
        Endpoint.parse("https://127.0.0.1/")
    with pytest.raises(InterlockError, match="duration or a stop event"):
        asyncio.run(run_load(["http://127.0.0.1:1/"], concurrency=1, duration=None))
    with pytest.raises(InterlockError, match="concurrency"):
        asyncio.run(run_load(["http://127.0.0.1:1/"], concurrency=0, duration=1))
    assert Endpoint.parse("http://h:81/a?b=1").request.startswith(
        b"GET /a?b=1 HTTP/1.1\r\nHost: h:81"
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 99) == 7.0
