"""Real processes for the rollout tests (on 127.0.0.0/8), each killed by its PID at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import interlock

LAB_API = Path(interlock.__file__).parent / "lab" / "files" / "lab_api.py"
CLI = [sys.executable, "-m", "interlock.cli.main"]
PYTHON = "/usr/bin/python3"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Processes:
    """Processes one test started; the test's end kills every one still alive, by PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []
        self.pidfiles: list[Path] = []

    def start(self, argv: Sequence[str], log: str, **options: object) -> subprocess.Popen[bytes]:
        with (self.directory / log).open("ab") as stream:
            process: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stream,
                stderr=subprocess.STDOUT,
                **options,
            )
        self.started.append(process)
        return process

    def api(self, name: str, address: str, port: int) -> Path:
        """A lab HTTP API on address:port; returns its pidfile (it is written once it listens)."""
        pidfile = self.directory / f"{name}.pid"
        self.pidfiles.append(pidfile)
        process = self.start(
            [
                PYTHON,
                "-I",
                str(LAB_API),
                "--bind",
                f"{address}:{port}",
                "--pidfile",
                str(pidfile),
                "--name",
                name,
            ],
            f"{name}.log",
        )
        wait_until(lambda: pidfile.exists() or process.poll() is not None, f"{name} to listen")
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        return pidfile

    def rollout(self, *args: str, log: str = "rollout.log") -> subprocess.Popen[bytes]:
        return self.start([*CLI, "rollout", *args], log)

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()
        # Daemons restarted by a test's steps, and commands a killed rollout left running, are
        # known by the pidfiles they wrote; a PID is killed only while it still runs one of
        # the programs the tests start.
        for pidfile in self.pidfiles:
            try:
                pid = int(pidfile.read_text().split()[0])
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                ours = (str(LAB_API).encode(), str(self.directory).encode())
                if any(mark in command for mark in ours) or command.startswith(b"sleep\0"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
