"""The transports an operator chooses by name (a spec's or a flag's `transport:`)."""

from __future__ import annotations

from interlock.fleet.transport.base import Transport

KINDS = ("ssh", "local")


def open_transport(kind: str, known_hosts: str | None = None) -> Transport:
    """`ssh` reaches the hosts, trusting the keys in `known_hosts` (else the user's own);
    `local` runs every command on this machine (one host, tests, a chroot)."""
    if kind == "local":
        from interlock.fleet.transport.local import LocalTransport

        return LocalTransport()
    from interlock.fleet.transport.ssh import SshTransport

    return SshTransport(known_hosts=known_hosts)
