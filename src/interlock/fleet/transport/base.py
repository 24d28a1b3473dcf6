"""The transport interface: run a command, put a file, get a file, on one host.

Every capability that acts on a host goes through this interface, so the same code runs on
this machine (`LocalTransport`) or across a fleet (`SshTransport`). Commands are argv lists,
never shell strings: a transport that needs a shell quotes every argument itself.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from interlock.errors import UsageError
from interlock.fleet.inventory import Host
from interlock.fleet.transport.errors import CommandFailed

# What a failed command's message quotes from its stderr: enough to see why, short enough to
# keep a fleet-wide report readable.
STDERR_EXCERPT = 300


@dataclass(frozen=True)
class CommandResult:
    host: str
    exit_status: int | None  # None when the process was killed by a signal
    stdout: bytes
    stderr: bytes
    duration: float
    exit_signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """This result, or CommandFailed naming the exit status and the end of stderr."""
        if self.ok:
            return self
        if self.exit_status is None:
            how = f"killed by signal {self.exit_signal or 'unknown'}"
        else:
            how = f"exit status {self.exit_status}"
        excerpt = self.stderr.decode("utf-8", "replace").strip()[-STDERR_EXCERPT:]
        raise CommandFailed(self.host, f"{how}: {excerpt}" if excerpt else how)


class Transport(ABC):
    @abstractmethod
    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        """Run argv on the host; a non-zero exit is a result, not an error. The command is stopped
        when `timeout` passes; with `remote_timeout` also on the host itself (under `timeout`),
        which a command bounded by construction (a fact read) can spare the host."""

    async def run_script(
        self,
        host: Host,
        script: str,
        *,
        args: Sequence[str] = (),
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run a POSIX sh script; `args` become "$1", "$2", ... so values are never spliced in."""
        return await self.run(host, ["sh", "-c", script, "sh", *args], input=input, timeout=timeout)

    @abstractmethod
    async def put_file(self, host: Host, data: bytes, path: str, mode: int = 0o644) -> None:
        """Replace `path` on the host atomically: readers see the old file or the whole new one."""

    @abstractmethod
    async def get_file(self, host: Host, path: str) -> bytes: ...

    async def disconnect(self, host: Host) -> None:
        """Forget the host's connection, if one is kept: the next command opens a new one (after
        a reboot the old one may hang until its keepalive gives up)."""
        return

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the transport must not be used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def check_argv(argv: Sequence[str]) -> list[str]:
    """argv as a list, refusing what no exec can carry (an empty argv, NUL bytes, non-strings)."""
    if isinstance(argv, str):
        raise UsageError(f"a command must be an argv list, not the string {argv!r}")
    args = list(argv)
    if not args:
        raise UsageError("empty command")
    for arg in args:
        if not isinstance(arg, str) or "\0" in arg:
            raise UsageError(f"invalid argument {arg!r} in {shlex.join(map(str, args))}")
    return args


def check_remote_path(path: str) -> str:
    if not path.startswith("/") or "\0" in path or path.endswith("/"):
        raise UsageError(f"a file path on a host must be absolute and name a file: {path!r}")
    return path


def describe_command(argv: Sequence[str], limit: int = 120) -> str:
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 1] + "…"
