"""Real OpenSSH servers on loopback addresses (127.0.0.2, .3, ...), one per test host.

Each sshd runs in a private mount namespace with tmpfs on /run (sshd needs /run/sshd, which
this machine lacks) and on /root (root's login shell would otherwise run this machine's slow
~/.bashrc for every command). Host keys, authorized_keys, configs, logs and pid files live in
the test's temporary directory; every server is stopped by its recorded PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from interlock.fleet.inventory import Host, Inventory

SSHD = "/usr/sbin/sshd"
NAMESPACE_SCRIPT = (
    "mount -t tmpfs tmpfs /run && mkdir /run/sshd && mount -t tmpfs tmpfs /root && "
    'exec "$0" -D -f "$1" -E "$2"'
)
SSHD_CONFIG = """\
ListenAddress {address}:{port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile {pid_file}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 20
LogLevel VERBOSE
"""


@dataclass
class SshdServer:
    name: str
    address: str
    port: int
    directory: Path
    host_key: asyncssh.SSHKey
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        public = (key or self.host_key).export_public_key().decode().strip()
        return f"[{self.address}]:{self.port} {public}\n"


class SshdFleet:
    def __init__(self, directory: Path, count: int, first_address: int = 2) -> None:
        self.directory = directory
        self.client_key = directory / "id_ed25519"
        self.known_hosts = directory / "known_hosts"
        self.authorized_keys = directory / "authorized_keys"
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(self.client_key)
        self.client_key.chmod(0o600)
        key.write_public_key(self.authorized_keys)
        self.servers = [
            self._prepare(f"h{index + 1:02d}", f"127.0.0.{first_address + index}")
            for index in range(count)
        ]
        self.known_hosts.write_text("".join(s.known_hosts_line() for s in self.servers))

    def _prepare(self, name: str, address: str) -> SshdServer:
        directory = self.directory / name
        directory.mkdir()
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(directory / "ssh_host_ed25519_key")
        (directory / "ssh_host_ed25519_key").chmod(0o600)
        server = SshdServer(name, address, free_port(address), directory, host_key)
        (directory / "sshd_config").write_text(
            SSHD_CONFIG.format(
                address=address,
                port=server.port,
                host_key=directory / "ssh_host_ed25519_key",
                authorized_keys=self.authorized_keys,
                pid_file=directory / "sshd.pid",
            )
        )
        return server

    def start(self) -> None:
        try:
            for server in self.servers:
                server.process = subprocess.Popen(
                    [
                        "unshare", "--mount", "--propagation", "private", "--",
                        "sh", "-c", NAMESPACE_SCRIPT,
                        SSHD, str(server.directory / "sshd_config"), str(server.log),
                    ],
                    start_new_session=True,
                )  # fmt: skip
            for server in self.servers:
                wait_listening(server)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            if server.process is not None and server.process.poll() is None:
                # The session leader's group holds sshd and its per-connection children.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGTERM)
        for server in self.servers:
            if server.process is not None:
                try:
                    server.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait()

    def host(self, server: SshdServer, **changes: object) -> Host:
        fields: dict[str, object] = {
            "name": server.name,
            "address": server.address,
            "port": server.port,
            "user": "root",
            "key": str(self.client_key),
            "groups": ("loopback",),
        }
        fields.update(changes)
        return Host(**fields)  # type: ignore[arg-type]

    @property
    def hosts(self) -> list[Host]:
        return [self.host(server) for server in self.servers]

    def inventory(self, extra: list[Host] | None = None) -> Inventory:
        hosts = {h.name: h for h in [*self.hosts, *(extra or [])]}
        return Inventory(
            path=None,
            hosts=hosts,
            groups={"loopback": tuple(hosts)},
            known_hosts=str(self.known_hosts),
        )


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(server: SshdServer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            log = server.log.read_text() if server.log.exists() else ""
            raise RuntimeError(f"sshd for {server.name} exited: {log}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((server.address, server.port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"sshd for {server.name} did not listen within {timeout} s")
