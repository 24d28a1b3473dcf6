"""Real haproxy and real HTTP backends on 127.0.0.1 for the lb tests, killed by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

import interlock
from interlock.lb.runtime import RuntimeClient, TcpOpener, UnixSocketOpener
from interlock.lb.stats import StatRow

HAPROXY = "/usr/sbin/haproxy"
PYTHON = "/usr/bin/python3"
LAB_API = Path(interlock.__file__).parent / "lab" / "files" / "lab_api.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: object, what: str, timeout: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Backend:
    name: str
    port: int
    pidfile: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self) -> None:
        """A graceful stop, as an init script does it: SIGTERM to the PID in the pidfile."""
        pid = int(self.pidfile.read_text().strip())
        assert pid == self.process.pid
        os.kill(pid, signal.SIGTERM)
        self.process.wait(timeout=30)


@dataclass
class Haproxy:
    directory: Path
    socket: Path
    admin_port: int
    user_port: int
    http_ports: Mapping[str, int]
    process: subprocess.Popen[bytes]

    def client(self, name: str = "lb", *, tcp: bool = False) -> RuntimeClient:
        if tcp:
            return RuntimeClient(name, TcpOpener("127.0.0.1", self.admin_port))
        return RuntimeClient(name, UnixSocketOpener(str(self.socket)))

    async def stat(self, server: str, backend: str = "api") -> StatRow:
        """The `show stat` row of one server."""
        rows = await self.client().show_stat()
        return next(
            r for r in rows if r.kind == "server" and (r.proxy, r.name) == (backend, server)
        )

    def url(self, frontend: str = "api", path: str = "/") -> str:
        return f"http://127.0.0.1:{self.http_ports[frontend]}{path}"


class Lab:
    """Processes of one test; every one is killed by its PID when the test ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []

    def backend(self, name: str, *, delay_ms: int = 0, port: int | None = None) -> Backend:
        port = port or free_port()
        pidfile = self.directory / f"{name}.pid"
        process = self.start(
            [
                PYTHON,
                "-I",
                str(LAB_API),
                "--bind",
                f"127.0.0.1:{port}",
                "--delay-ms",
                str(delay_ms),
                "--pidfile",
                str(pidfile),
                "--name",
                name,
            ],
            self.directory / f"{name}.log",
        )
        # lab_api writes its pidfile once it listens.
        wait_until(lambda: pidfile.exists() or process.poll() is not None, f"{name} to listen")
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        return Backend(name, port, pidfile, process)

    def haproxy(
        self,
        backends: Mapping[str, Sequence[tuple[str, str]]],
        *,
        name: str = "haproxy",
        extra: str = "",
        wait_up: bool = True,
    ) -> Haproxy:
        """haproxy with one frontend per backend; `backends` maps backend → [(server, addr)]."""
        directory = self.directory / name
        directory.mkdir()
        admin_port, user_port = free_port(), free_port()
        http_ports = {backend: free_port() for backend in backends}
        sock = directory / "admin.sock"
        lines = [
            "global",
            f"    stats socket {sock} mode 600 level admin",
            f"    stats socket ipv4@127.0.0.1:{admin_port} level admin",
            f"    stats socket ipv4@127.0.0.1:{user_port} level user",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    option httpchk GET /health",
            "    default-server check inter 1s fall 2 rise 2",
        ]
        for backend, servers in backends.items():
            lines += [
                # Named like its backend, as in many real configs: `show stat NAME` would
                # then pick the frontend.
                f"frontend {backend}",
                f"    bind 127.0.0.1:{http_ports[backend]}",
                f"    default_backend {backend}",
                f"backend {backend}",
                "    balance roundrobin",
            ]
            lines += [f"    server {server} {address}" for server, address in servers]
        config = directory / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n" + extra)
        process = self.start([HAPROXY, "-db", "-f", str(config)], directory / "haproxy.log")
        proxy = Haproxy(directory, sock, admin_port, user_port, http_ports, process)
        wait_until(lambda: sock.exists() or process.poll() is not None, f"{name} admin socket")
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        if wait_up:
            wait_until(lambda: all_up(proxy, list(backends)), f"{name} servers UP")
        return proxy

    def start(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a process with its output in a log file kept in the test's directory."""
        with log.open("ab") as stream:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stream, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


def all_up(proxy: Haproxy, backends: Sequence[str]) -> bool:
    rows = asyncio.run(proxy.client().show_stat())
    return all(row.status == "UP" for row in rows if row.kind == "server" and row.proxy in backends)


class HeldRequest:
    """A GET sent through haproxy whose answer is awaited in the background."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port = port
        self.path = path
        self.task: asyncio.Task[bytes] | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET {self.path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()

        async def answer() -> bytes:
            try:
                return await reader.read()
            except ConnectionResetError:
                return b""
            finally:
                writer.close()

        self.task = asyncio.create_task(answer())

    async def reply(self) -> bytes:
        assert self.task is not None
        return await asyncio.wait_for(self.task, 30)


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path

    async def connect(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1",
            port=self.port,
            username="root",
            client_keys=[str(self.client_key)],
            known_hosts=str(self.known_hosts),
        )
