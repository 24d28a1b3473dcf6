"""Run commands and move files on hosts: locally or over SSH, one host or a window of many."""

from interlock.fleet.transport.base import CommandResult, Transport
from interlock.fleet.transport.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    TransferFailed,
    TransportError,
)
from interlock.fleet.transport.fan_out import HostOutcome, fan_out
from interlock.fleet.transport.local import LocalTransport
from interlock.fleet.transport.ssh import SshTransport

__all__ = [
    "AuthenticationFailed",
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "HostOutcome",
    "HostUnreachable",
    "LocalTransport",
    "SshTransport",
    "TransferFailed",
    "Transport",
    "TransportError",
    "fan_out",
]
