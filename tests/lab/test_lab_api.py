"""The lab's HTTP API program, run as the controllers run it, on a loopback port."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from interlock.lab.image import FILES

PROGRAM = FILES / "lab_api.py"


@dataclass
class Api:
    process: subprocess.Popen[bytes]
    port: int
    pidfile: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_api(tmp_path: Path, delay_ms: int) -> Api:
    port = free_port()
    pidfile = tmp_path / "lab-api.pid"
    process = subprocess.Popen(
        [
            "/usr/bin/python3", "-I", str(PROGRAM),
            "--bind", f"127.0.0.1:{port}",
            "--delay-ms", str(delay_ms),
            "--pidfile", str(pidfile),
            "--name", "api-under-test",
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"lab_api did not start: {process.communicate()[1]!r}")
        time.sleep(0.02)
    return Api(process, port, pidfile)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    started = start_api(tmp_path, delay_ms=300)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
        started.process.communicate()


def test_health_and_json_replies_on_one_keep_alive_connection(api: Api) -> None:
    conn = api.connection()
    conn.request("GET", "/health")
    health = conn.getresponse()
    assert (health.status, health.read()) == (200, b"ok\n")
    first_socket = conn.sock

    conn.request("GET", "/anything")
    reply = conn.getresponse()

    assert reply.status == 200 and not reply.will_close
    assert json.loads(reply.read()) == {"host": "api-under-test", "pid": api.process.pid}
    assert conn.sock is first_socket  # the same TCP connection served both requests
    assert int(api.pidfile.read_text()) == api.process.pid
    conn.close()


def test_sigterm_finishes_the_request_in_flight_then_exits(api: Api) -> None:
    replies: list[tuple[int, str | None, bytes]] = []

    def slow_request() -> None:
        conn = api.connection()
        conn.request("GET", "/slow")
        response = conn.getresponse()
        replies.append((response.status, response.getheader("Connection"), response.read()))

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.1)  # the request is being worked on (300 ms)
    api.process.send_signal(signal.SIGTERM)
    worker.join(timeout=10)

    assert api.process.wait(timeout=10) == 0
    assert len(replies) == 1
    status, connection, body = replies[0]
    assert status == 200 and connection == "close"
    assert json.loads(body)["pid"] == api.process.pid
    assert not api.pidfile.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", api.port), timeout=2)


def test_sigterm_closes_idle_keep_alive_connections(api: Api) -> None:
    conn = api.connection()
    conn.request("GET", "/health")
    conn.getresponse().read()

    api.process.send_signal(signal.SIGTERM)

    # An idle client does not hold the service up; it sees its connection closed.
    assert api.process.wait(timeout=10) == 0
    assert conn.sock is not None
    assert conn.sock.recv(1) == b""
    conn.close()


def test_refuses_a_port_in_use_and_a_bad_bind(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            ["/usr/bin/python3", "-I", str(PROGRAM), "--bind", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert busy.returncode == 1 and "cannot listen" in busy.stderr
    bad = subprocess.run(
        ["/usr/bin/python3", "-I", str(PROGRAM), "--bind", "no-port"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert bad.returncode == 2 and "ADDRESS:PORT" in bad.stderr
