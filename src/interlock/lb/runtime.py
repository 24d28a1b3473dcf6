"""A client for haproxy's runtime API (the admin "stats socket").

haproxy answers one command per connection: the client writes the command and a newline and
reads until haproxy closes the connection. Errors come back as plain text in the reply, never as
a socket error, so every reply is checked. How the byte stream is reached (a local unix socket,
TCP, or the LB host's unix socket forwarded over SSH) is an `Opener`; one client serves all three.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncssh

from interlock.errors import InterlockError
from interlock.lb.stats import (
    ReplyFormatError,
    ServerConn,
    ServerState,
    StatRow,
    parse_show_servers_conn,
    parse_show_servers_state,
    parse_show_stat,
)

# haproxy's CLI answers at most a few MB even for a large config; a cap keeps a runaway peer
# from exhausting memory.
MAX_REPLY_BYTES = 64 * 1024 * 1024
ADMIN_STATES = ("ready", "drain", "maint")
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")


class LbUnreachable(InterlockError):
    """The admin socket of a load balancer could not be reached or stopped answering."""

    def __init__(self, lb: str, reason: str) -> None:
        self.lb = lb
        self.reason = reason
        super().__init__(f"load balancer {lb}: {reason}")


class RuntimeApiError(InterlockError):
    """haproxy refused or did not understand a command."""

    def __init__(self, lb: str, command: str, reply: str, detail: str | None = None) -> None:
        self.lb = lb
        self.command = command
        self.reply = reply
        super().__init__(f"load balancer {lb}: {command!r} failed: {detail or first_line(reply)}")


class UnknownCommand(RuntimeApiError):
    """This haproxy does not have the command (older versions lack some `show` commands)."""


class ByteReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class Opener(Protocol):
    """Opens one byte stream to an admin socket per call."""

    @property
    def address(self) -> str: ...

    async def open(self) -> tuple[ByteReader, ByteWriter]: ...

    async def close(self) -> None: ...


class UnixSocketOpener:
    """An admin socket on this machine."""

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    async def open(self) -> tuple[ByteReader, ByteWriter]:
        return await asyncio.open_unix_connection(self.path)

    async def close(self) -> None:
        return None


class TcpOpener:
    """An admin socket bound to a TCP address (`stats socket ipv4@ADDR:PORT`)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @classmethod
    def parse(cls, text: str) -> TcpOpener:
        host, sep, port = text.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InterlockError(f"expected HOST:PORT for a TCP admin socket, got {text!r}")
        return cls(host, int(port))

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    async def open(self) -> tuple[ByteReader, ByteWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        return None


class SshOpener:
    """The unix admin socket on a remote LB host, reached by SSH stream-local forwarding.

    Nothing has to be installed on the LB host: sshd connects to the socket itself
    (direct-streamlocal), so this needs only `AllowStreamLocalForwarding` (on by default).
    One SSH connection is opened on first use and shared by every command.
    """

    def __init__(
        self,
        label: str,
        connect: Callable[[], Awaitable[asyncssh.SSHClientConnection]],
        path: str,
        *,
        owns_connection: bool = True,
    ) -> None:
        self.label = label
        self.path = path
        self._connect = connect
        self._owns_connection = owns_connection
        self._connection: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return f"ssh:{self.label}:{self.path}"

    async def open(self) -> tuple[ByteReader, ByteWriter]:
        async with self._lock:
            # A connection the peer dropped is replaced, not reused.
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._connect()
            connection = self._connection
        reader, writer = await connection.open_unix_connection(self.path)
        return reader, writer

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._owns_connection:
            connection.close()
            await connection.wait_closed()


class RuntimeClient:
    """One haproxy, addressed by its inventory name, reached through `opener`."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.opener = opener
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"RuntimeClient({self.name!r}, {self.opener.address})"

    async def execute(self, command: str) -> str:
        """Send one command and return haproxy's whole reply, unchecked."""
        if "\n" in command or ";" in command:
            # A newline or ';' would smuggle a second command into the same connection.
            raise InterlockError(f"refusing runtime API command with a separator: {command!r}")
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await self.opener.open()
        except TimeoutError:
            raise LbUnreachable(
                self.name,
                f"no connection to {self.opener.address} within {self.connect_timeout:g} s",
            ) from None
        except (OSError, asyncssh.Error, InterlockError) as exc:
            raise LbUnreachable(
                self.name, f"cannot connect to {self.opener.address}: {exc}"
            ) from exc
        try:
            async with asyncio.timeout(self.read_timeout):
                writer.write(command.encode() + b"\n")
                await writer.drain()
                reply = await read_to_eof(reader)
        except TimeoutError:
            raise LbUnreachable(
                self.name,
                f"no complete reply to {command!r} from {self.opener.address} "
                f"within {self.read_timeout:g} s",
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise LbUnreachable(
                self.name, f"connection to {self.opener.address} failed during {command!r}: {exc}"
            ) from exc
        finally:
            writer.close()
        return reply.decode("utf-8", errors="replace")

    async def act(self, command: str) -> None:
        """Run a command that changes state: haproxy answers success with an empty reply."""
        reply = await self.execute(command)
        if reply.strip():
            raise self.error(command, reply)

    def error(
        self, command: str, reply: str, problem: ReplyFormatError | None = None
    ) -> RuntimeApiError:
        if reply.startswith("Unknown command"):
            return UnknownCommand(self.name, command, reply)
        # haproxy's error texts are one line of prose; anything else is data that did not parse.
        looks_like_data = reply.startswith("#") or reply.startswith("1\n")
        detail = f"unexpected reply: {problem}" if problem and looks_like_data else None
        return RuntimeApiError(self.name, command, reply, detail)

    async def show_stat(self, proxy_id: int | None = None) -> list[StatRow]:
        """All rows, or only the server rows of one backend (less to read while polling).

        The backend is given by its numeric id (`be_id` of `show servers state`): by name,
        haproxy picks the first proxy called that, which is often a frontend of the same name.
        """
        command = "show stat" if proxy_id is None else f"show stat {proxy_id} 4 -1"
        reply = await self.execute(command)
        try:
            return parse_show_stat(reply)
        except ReplyFormatError as problem:
            raise self.error(command, reply, problem) from None

    async def show_servers_state(self, backend: str | None = None) -> list[ServerState]:
        command = "show servers state"
        if backend is not None:
            command += f" {check_name(backend)}"
        reply = await self.execute(command)
        try:
            return parse_show_servers_state(reply)
        except ReplyFormatError as problem:
            raise self.error(command, reply, problem) from None

    async def show_servers_conn(self, backend: str | None = None) -> list[ServerConn]:
        command = "show servers conn"
        if backend is not None:
            command += f" {check_name(backend)}"
        reply = await self.execute(command)
        try:
            return parse_show_servers_conn(reply)
        except ReplyFormatError as problem:
            raise self.error(command, reply, problem) from None

    async def set_server_state(self, backend: str, server: str, state: str) -> None:
        if state not in ADMIN_STATES:
            raise InterlockError(
                f"server state must be one of {', '.join(ADMIN_STATES)}: {state!r}"
            )
        await self.act(f"set server {check_name(backend)}/{check_name(server)} state {state}")

    async def shutdown_sessions(self, backend: str, server: str) -> None:
        await self.act(f"shutdown sessions server {check_name(backend)}/{check_name(server)}")

    async def close(self) -> None:
        await self.opener.close()


async def read_to_eof(reader: ByteReader) -> bytes:
    """Read until haproxy closes the connection: a reply may span many packets."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise OSError(f"reply larger than {MAX_REPLY_BYTES} bytes")
    return b"".join(chunks)


def check_name(name: str) -> str:
    """Proxy and server names go into a command line; haproxy allows only these characters."""
    if not NAME_RE.fullmatch(name):
        raise InterlockError(
            f"invalid haproxy backend or server name {name!r}: "
            "expected letters, digits, '-', '_', '.' or ':'"
        )
    return name


def first_line(reply: str) -> str:
    line = reply.strip().splitlines()[0] if reply.strip() else "(empty reply)"
    return line if len(line) <= 200 else line[:200] + "…"
