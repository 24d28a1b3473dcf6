"""Fixtures of the lb tests: real processes started per test, all killed by PID when it ends."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lb.haproxy_lab import Lab, Sshd, free_port


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    processes = Lab(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """sshd on 127.0.0.1 with a temporary host key and authorized key.

    It runs in a private mount namespace with its own /run, because it needs /run/sshd and the
    machine's /run is left alone.
    """
    directory = tmp_path / "sshd"
    directory.mkdir()
    host_key, client_key = directory / "host_key", directory / "client_key"
    for key in (host_key, client_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    (directory / "authorized_keys").write_text(
        Path(f"{client_key}.pub").read_text(), encoding="ascii"
    )
    port = free_port()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                f"PidFile {directory / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowStreamLocalForwarding yes",
                "",
            ]
        )
    )
    script = 'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"'
    with (directory / "sshd.log").open("ab") as log:
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not (directory / "sshd.pid").exists():
            assert process.poll() is None, (directory / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.05)
        yield Sshd(port, client_key, known_hosts)
    finally:
        process.kill()
        process.wait(timeout=10)
