"""Running a fact's command on a host.

A fact's command is bounded by construction: shell builtins on regular files (FIFOs and other
special files are skipped) and /proc, `systemctl show` with its own D-Bus timeout, and at most
a readlink, a wc or a dpkg-query over files. So it runs without the `timeout` process the
transport otherwise puts in front of a command on the host, which every host of a fleet read
would pay; the deadline is still kept on this side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the transport (asyncssh) is imported by whoever passes one
    from interlock.fleet.inventory import Host
    from interlock.fleet.transport.base import CommandResult, Transport


async def run_fact(
    transport: Transport, host: Host, argv: Sequence[str], timeout: float
) -> CommandResult:
    return await transport.run(host, argv, timeout=timeout, remote_timeout=False)
