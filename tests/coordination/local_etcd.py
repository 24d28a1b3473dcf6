"""A real single-member etcd on loopback (random ports), for tests that need no lab."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from interlock.lab.etcd import member_argv
from rollout.rollout_processes import free_port


def etcd_or_skip() -> str:
    found = shutil.which("etcd")
    if found is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    return found


@contextmanager
def local_etcd(directory: Path) -> Iterator[str]:
    """Yields the coordination URL; the member is killed (by its PID) and waited for at the end."""
    etcd_or_skip()
    client, peer = free_port(), free_port()
    directory.mkdir(parents=True, exist_ok=True)
    cluster = f"solo=http://127.0.0.1:{peer}"
    with (directory / "etcd.log").open("ab") as log:
        process = subprocess.Popen(
            member_argv("solo", directory / "data", "127.0.0.1", cluster, client, peer),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        break
            except OSError:
                pass
            assert process.poll() is None, (directory / "etcd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "etcd did not become healthy"
            time.sleep(0.05)
        yield f"etcd://127.0.0.1:{client}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def etcdctl(url: str, *args: str) -> str:
    """The real etcdctl against the same member: an independent view of the keys."""
    endpoints = url.removeprefix("etcd://").split("?")[0]
    result = subprocess.run(
        ["etcdctl", "--endpoints", endpoints, *args],
        capture_output=True,
        text=True,
        check=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )
    return result.stdout
