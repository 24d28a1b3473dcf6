"""The lab's SSH side: a client key, one host key shared by every host, each host's sshd config."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from interlock.lab.errors import LabError

CLIENT_KEY = "id_ed25519"
HOST_KEY = "ssh_host_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"
KNOWN_HOSTS = "known_hosts"
SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_PIDFILE = "/run/sshd.pid"


@dataclass(frozen=True)
class LabKeys:
    client_key: Path
    host_key: Path
    authorized_keys: Path
    known_hosts: Path


def ensure_keys(directory: Path, subnet: str) -> LabKeys:
    """Create the keys once per lab directory (kept across `up`s so known_hosts stays valid)."""
    client = directory / CLIENT_KEY
    host = directory / HOST_KEY
    for path, comment in ((client, "interlock-lab-client"), (host, "interlock-lab-host")):
        if not path.exists() or not path.with_suffix(".pub").exists():
            path.unlink(missing_ok=True)
            path.with_suffix(".pub").unlink(missing_ok=True)
            _keygen(path, comment)
    authorized = directory / AUTHORIZED_KEYS
    authorized.write_text(client.with_suffix(".pub").read_text(encoding="ascii"), encoding="ascii")
    known = directory / KNOWN_HOSTS
    host_public = host.with_suffix(".pub").read_text(encoding="ascii")
    known.write_text(render_known_hosts(subnet, host_public), encoding="ascii")
    return LabKeys(client, host, authorized, known)


def _keygen(path: Path, comment: str) -> None:
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"ssh-keygen could not create {path}: {result.stderr.strip()}")


def known_hosts_pattern(subnet: str) -> str:
    """A known_hosts pattern covering the subnet: `10.200.*` for a /16, `10.200.7.*` for a /24.

    A prefix that does not end on an octet widens to the enclosing octet; the file is private to
    the lab, so the wider match only ever meets lab hosts.
    """
    network = ipaddress.IPv4Network(subnet)
    octets = str(network.network_address).split(".")
    fixed = network.prefixlen // 8
    if fixed == 4:
        return str(network.network_address)
    return ".".join([*octets[:fixed], "*"])


def render_known_hosts(subnet: str, host_public_key: str) -> str:
    key_type, key_data = host_public_key.split()[:2]
    return f"{known_hosts_pattern(subnet)} {key_type} {key_data}\n"


def render_sshd_config(address: str, keys: LabKeys, log_level: str = "INFO") -> str:
    # Lives at /etc/ssh/sshd_config inside the host, so Debian's /etc/init.d/ssh acts on this sshd.
    return "\n".join(
        [
            "# sshd of one interlock lab host",
            f"ListenAddress {address}",
            "Port 22",
            f"HostKey {keys.host_key}",
            f"PidFile {SSHD_PIDFILE}",
            f"AuthorizedKeysFile {keys.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The lab directory may sit under a world-writable parent such as /tmp.
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowStreamLocalForwarding yes",
            "AllowTcpForwarding yes",
            # Fan-out opens many connections at once; refuse none of them early.
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            f"LogLevel {log_level}",
            "",
        ]
    )
