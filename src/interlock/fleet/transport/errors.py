"""Per-host failures of the transport: each names the host and a reason an operator can act on."""

from __future__ import annotations

from interlock.errors import InterlockError


class TransportError(InterlockError):
    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class HostUnreachable(TransportError):
    """No SSH session could be had: refused, timed out, no route, or the connection dropped."""


class AuthenticationFailed(TransportError):
    """The host answered but did not accept our key for the user."""


class HostKeyMismatch(TransportError):
    """The host's key is not one known_hosts trusts for it; the connection was refused."""


class HostKeyUnknown(HostKeyMismatch):
    """known_hosts has no key at all for the host: as untrusted as a wrong one."""


class CommandTimeout(TransportError):
    """The command did not finish in time; it was stopped and its partial output kept."""

    def __init__(self, host: str, reason: str, stdout: bytes = b"", stderr: bytes = b"") -> None:
        super().__init__(host, reason)
        self.stdout = stdout
        self.stderr = stderr


class CommandFailed(TransportError):
    """A command a caller required to succeed exited non-zero or was killed."""


class TransferFailed(TransportError):
    """A file could not be written to or read from the host."""
