"""The SSH transport (asyncssh): one connection per host, reused by every command of a run.

Why it is shaped this way:
- CPU, not the network, bounds a fleet run (key exchange and sshd's fork per connection), so a
  host costs one handshake per run, curve25519 key exchange is preferred, keys and known_hosts
  are read once, and ~/.ssh/config is not consulted (the inventory is the only source of where
  and how to connect).
- Host keys are checked against known_hosts unless the caller explicitly turns that off; a
  refused key names the key presented and the keys on record.
- A command timeout must stop the command on the host too. OpenSSH does not deliver signals to
  root sessions, so a timed command runs under coreutils `timeout`, set to fire shortly after
  the local deadline: the local side reports the timeout, the host side ends the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import posixpath
import shlex
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from interlock.errors import FileFormatError, UsageError
from interlock.fleet.inventory import Host, Inventory
from interlock.fleet.transport.base import (
    CommandResult,
    Transport,
    check_argv,
    check_remote_path,
    describe_command,
)
from interlock.fleet.transport.errors import (
    AuthenticationFailed,
    CommandTimeout,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    TransferFailed,
)

# Prepended to asyncssh's defaults: fast and available since OpenSSH 6.5. The post-quantum
# hybrids cost more CPU per handshake, and handshakes are what bounds a fleet run; the price is
# giving up their protection against later decryption of recorded sessions.
KEX_ALGS = "^curve25519-sha256,curve25519-sha256@libssh.org"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# The host-side `timeout` fires this long after the local deadline, then KILLs after the second.
REMOTE_TIMEOUT_GRACE = 1.0
REMOTE_KILL_AFTER = 5
# sshd allows 10 sessions per connection by default (MaxSessions).
MAX_SESSIONS_PER_HOST = 8

# Writes stdin to a hidden temp file beside the target, checks the byte count (a dropped
# connection must not publish a truncated file), fsyncs, then renames over the target.
PUT_FILE_SCRIPT = """set -e
t=$(mktemp "$2")
trap 'rm -f "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$t"
n=$(wc -c < "$t")
if [ $n -ne "$3" ]; then echo "received $n of $3 bytes" >&2; exit 1; fi
chmod "$4" "$t"
sync "$t"
mv -f "$t" "$1"
trap - EXIT"""


def put_file_argv(path: str, size: int, mode: int) -> list[str]:
    """The host command that receives `size` bytes on stdin and installs them at `path`."""
    directory, name = posixpath.split(check_remote_path(path))
    template = posixpath.join(directory, f".{name}.interlock-XXXXXXXX")
    return ["sh", "-c", PUT_FILE_SCRIPT, "interlock-put", path, template, str(size), f"{mode:o}"]


def timed_argv(argv: Sequence[str], timeout: float | None) -> list[str]:
    """argv under the host's `timeout`, so its process group ends even if we cannot signal it."""
    if timeout is None:
        return list(argv)
    limit = f"{timeout + REMOTE_TIMEOUT_GRACE:.3f}"
    return ["timeout", "-k", str(REMOTE_KILL_AFTER), limit, *argv]


def login_shell_command(argv: Sequence[str]) -> str:
    """The command line for the login shell. `bash -c SCRIPT NAME ARG...` runs SCRIPT in the
    login shell itself when that is bash (root's on Debian and Ubuntu): one bash fewer on every
    host of a fleet read. Any other shell execs bash as asked. Every value is quoted."""
    if len(argv) < 3 or argv[0] != "bash" or argv[1] != "-c":
        return shlex.join(argv)
    name = argv[3] if len(argv) > 3 else "bash"
    return (
        f"set -- {shlex.join(argv[4:])}; s={shlex.quote(argv[2])}; "
        'if [ -n "${BASH_VERSION-}" ]; then eval "$s"; '
        f'else exec bash -c "$s" {shlex.quote(name)} "$@"; fi'
    )


class _Client(asyncssh.SSHClient):
    """Tells the transport when a cached connection dies, so the next call reconnects."""

    def __init__(self, on_lost: Callable[[asyncssh.SSHClientConnection], None]) -> None:
        self._on_lost = on_lost
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._on_lost(self._conn)


INSECURE_WARNING = (
    "interlock: WARNING: SSH host keys are NOT checked (--insecure-no-host-key-check): "
    "anyone on the network path can impersonate these hosts"
)


class SshTransport(Transport):
    """Commands and files on inventory hosts over SSH.

    `connect_timeout` bounds each connection attempt (TCP, handshake and login); a refused,
    unanswered or dropped attempt is retried `connect_attempts - 1` times, `retry_delay` doubling
    each time. `command_timeout` applies to calls that give no timeout of their own.
    """

    def __init__(
        self,
        *,
        known_hosts: str | None = None,
        check_host_keys: bool = True,
        connect_timeout: float = 10.0,
        connect_attempts: int = 3,
        retry_delay: float = 0.5,
        command_timeout: float | None = None,
        keepalive_interval: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        if connect_attempts < 1 or max_connections < 1:
            raise UsageError("connect_attempts and max_connections must be at least 1")
        self.known_hosts_path = str(Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser())
        self.check_host_keys = check_host_keys
        if not check_host_keys:
            # Said by the transport itself, so no caller can switch checking off quietly.
            print(INSECURE_WARNING, file=sys.stderr)
        self.connect_timeout = connect_timeout
        self.connect_attempts = connect_attempts
        self.retry_delay = retry_delay
        self.command_timeout = command_timeout
        self.keepalive_interval = keepalive_interval
        self.max_connections = max_connections
        self.connections_opened = 0
        # Most recently used last: idle connections beyond max_connections are closed from the
        # front, so a run over thousands of hosts does not run out of file descriptors.
        self._connections: OrderedDict[str, asyncssh.SSHClientConnection] = OrderedDict()
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._sessions: dict[str, asyncio.Semaphore] = {}
        self._active: dict[str, int] = {}
        self._trusted: asyncssh.SSHKnownHosts | None = None
        self._client_keys: dict[str, Sequence[asyncssh.SSHKeyPair]] = {}

    @classmethod
    def for_inventory(cls, inventory: Inventory, **options: Any) -> SshTransport:
        """A transport that trusts the host keys the inventory's known_hosts file lists."""
        return cls(known_hosts=inventory.known_hosts, **options)

    # --- connections -----------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def connection(self, host: Host) -> asyncssh.SSHClientConnection:
        """The host's connection, opened on first use; concurrent callers share one attempt."""
        conn = self._cached(host.name)
        if conn is not None:
            return conn
        lock = self._connect_locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            conn = self._cached(host.name)
            if conn is None:
                conn = await self._connect(host)
                self._connections[host.name] = conn
                self._evict_idle()
            return conn

    def _cached(self, name: str) -> asyncssh.SSHClientConnection | None:
        conn = self._connections.get(name)
        if conn is not None:
            self._connections.move_to_end(name)
        return conn

    def _drop(self, name: str, conn: asyncssh.SSHClientConnection) -> None:
        if self._connections.get(name) is conn:
            del self._connections[name]

    def _evict_idle(self) -> None:
        excess = len(self._connections) - self.max_connections
        for name in list(self._connections):
            if excess <= 0:
                break
            if not self._active.get(name):
                self._connections.pop(name).close()
                excess -= 1

    async def _connect(self, host: Host) -> asyncssh.SSHClientConnection:
        options = await self._options(host)
        failure: BaseException | None = None
        for attempt in range(self.connect_attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            try:
                conn = await asyncssh.connect(
                    host.address,
                    host.port,
                    client_factory=lambda: _Client(lambda c: self._drop(host.name, c)),
                    **options,
                )
            except asyncssh.HostKeyNotVerifiable:
                raise await self._host_key_error(host) from None
            except asyncssh.PermissionDenied as exc:
                raise AuthenticationFailed(
                    host.name,
                    f"{host.user}@{host.address} port {host.port} did not accept our key "
                    f"({exc.reason})",
                ) from None
            except (OSError, TimeoutError, asyncssh.ConnectionLost) as exc:
                failure = exc
                continue
            except asyncssh.Error as exc:
                raise HostUnreachable(
                    host.name, f"{host.address} port {host.port}: SSH failed: {exc.reason}"
                ) from None
            self.connections_opened += 1
            return conn
        assert failure is not None
        tries = "1 attempt" if self.connect_attempts == 1 else f"{self.connect_attempts} attempts"
        raise HostUnreachable(
            host.name,
            f"{host.address} port {host.port}: {self._describe(failure)} (after {tries})",
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no SSH answer within {self.connect_timeout:g} s"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the address: {exc.strerror}"
        if isinstance(exc, asyncssh.ConnectionLost):
            return f"connection closed during the handshake ({exc.reason})"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc)
        return str(exc)

    async def _options(self, host: Host) -> dict[str, Any]:
        options: dict[str, Any] = {
            "username": host.user,
            "known_hosts": self._known_hosts(host) if self.check_host_keys else None,
            "config": None,
            "kex_algs": KEX_ALGS,
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "preferred_auth": "publickey",
        }
        if host.key is not None:
            options["client_keys"] = await self._load_key(host.key)
            options["agent_path"] = None
        return options

    def _known_hosts(self, host: Host) -> asyncssh.SSHKnownHosts:
        if self._trusted is None:
            path = self.known_hosts_path
            try:
                text = Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise HostKeyUnknown(
                    host.name,
                    f"known_hosts file {path} does not exist, so no host key can be trusted",
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise FileFormatError(path, f"cannot read known_hosts: {exc}") from None
            try:
                self._trusted = asyncssh.import_known_hosts(text)
            except ValueError as exc:
                raise FileFormatError(path, f"not a known_hosts file: {exc}") from None
        return self._trusted

    async def _load_key(self, path: str) -> Sequence[asyncssh.SSHKeyPair]:
        if path not in self._client_keys:
            try:
                keys = await asyncio.to_thread(asyncssh.load_keypairs, path)
            except OSError as exc:
                raise FileFormatError(path, f"cannot read the SSH key: {exc.strerror}") from None
            except ValueError as exc:
                raise FileFormatError(path, f"cannot load the SSH key: {exc}") from None
            self._client_keys[path] = keys
        return self._client_keys[path]

    async def _host_key_error(self, host: Host) -> HostKeyMismatch:
        trusted = self._known_hosts(host)
        addr = host.address if _is_ip(host.address) else ""
        matches = trusted.match(host.address, addr, host.port)
        keys, ca_keys = matches[0], matches[1]
        where = f"{host.address} port {host.port}"
        if not keys and not ca_keys:
            return HostKeyUnknown(
                host.name, f"{self.known_hosts_path} has no key for {where}; refusing to connect"
            )
        expected = ", ".join(key.get_fingerprint() for key in keys) or "a certificate authority"
        presented = await self._presented_key(host, [key.algorithm.decode() for key in keys])
        return HostKeyMismatch(
            host.name,
            f"{where} presented host key {presented}, but {self.known_hosts_path} has "
            f"{expected}; refusing to connect (the host was reinstalled, or this is not the host)",
        )

    async def _presented_key(self, host: Host, algorithms: list[str]) -> str:
        # Only to make the refusal message precise: a failure here must not hide the refusal.
        try:
            key = await asyncssh.get_server_host_key(
                host.address,
                host.port,
                server_host_key_algs=algorithms or (),
                config=None,
                options=asyncssh.SSHClientConnectionOptions(connect_timeout=self.connect_timeout),
            )
        except (OSError, TimeoutError, asyncssh.Error):
            return "(could not be read again)"
        return key.get_fingerprint() if key is not None else "(none)"

    # --- commands and files ----------------------------------------------------------------

    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        args = check_argv(argv)
        limit = self.command_timeout if timeout is None else timeout
        command = (
            shlex.join(timed_argv(args, limit)) if remote_timeout else login_shell_command(args)
        )
        semaphore = self._sessions.setdefault(host.name, asyncio.Semaphore(MAX_SESSIONS_PER_HOST))
        # Counted as active from the start, so no other host's new connection evicts this one
        # between getting it and opening the session.
        self._active[host.name] = self._active.get(host.name, 0) + 1
        try:
            conn = await self.connection(host)
            async with semaphore:
                return await self._run_session(host, conn, args, command, input, limit)
        finally:
            self._active[host.name] -= 1

    async def _run_session(
        self,
        host: Host,
        conn: asyncssh.SSHClientConnection,
        args: list[str],
        command: str,
        input: bytes | None,
        limit: float | None,
    ) -> CommandResult:
        started = time.monotonic()
        try:
            process = await conn.create_process(command, encoding=None)
        except asyncssh.ChannelOpenError as exc:
            raise HostUnreachable(host.name, f"the host refused a session: {exc.reason}") from None
        except (OSError, asyncssh.Error) as exc:
            self._drop(host.name, conn)
            raise HostUnreachable(host.name, f"connection lost: {_reason(exc)}") from None
        try:
            async with asyncio.timeout(limit):
                # A command that exits without reading its input closes the channel under us.
                with contextlib.suppress(BrokenPipeError):
                    if input:
                        process.stdin.write(input)
                    process.stdin.write_eof()
                stdout, stderr = await process.communicate()
        except TimeoutError:
            stdout, stderr = process.collect_output()
            raise CommandTimeout(
                host.name,
                f"{describe_command(args)} did not finish within {limit:g} s and was stopped",
                stdout,
                stderr,
            ) from None
        except (OSError, asyncssh.Error) as exc:
            self._drop(host.name, conn)
            raise HostUnreachable(
                host.name, f"connection lost while running {describe_command(args)}: {_reason(exc)}"
            ) from None
        finally:
            process.close()
        status, exit_signal = process.exit_status, process.exit_signal
        if status is None and exit_signal is None:
            raise HostUnreachable(
                host.name, f"connection lost while running {describe_command(args)}"
            )
        return CommandResult(
            host=host.name,
            exit_status=None if exit_signal is not None else status,
            stdout=stdout,
            stderr=stderr,
            duration=time.monotonic() - started,
            exit_signal=exit_signal[0] if exit_signal is not None else None,
        )

    async def disconnect(self, host: Host) -> None:
        conn = self._connections.pop(host.name, None)
        if conn is not None:
            conn.close()

    async def put_file(self, host: Host, data: bytes, path: str, mode: int = 0o644) -> None:
        result = await self.run(host, put_file_argv(path, len(data), mode), input=data)
        if not result.ok:
            raise TransferFailed(host.name, f"cannot write {path}: {_last_line(result.stderr)}")

    async def get_file(self, host: Host, path: str) -> bytes:
        result = await self.run(host, ["cat", "--", check_remote_path(path)])
        if not result.ok:
            raise TransferFailed(host.name, f"cannot read {path}: {_last_line(result.stderr)}")
        return result.stdout

    async def close(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        for conn in connections:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in connections))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    return str(exc) or type(exc).__name__


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
