"""The transport for this machine: subprocesses and local files, same behaviour as over SSH."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import (
    CommandResult,
    Transport,
    check_argv,
    check_remote_path,
    describe_command,
)
from interlock.fleet.transport.errors import CommandTimeout, TransferFailed

# After a timeout kills the process group, how long to wait for pipes held open by processes
# that left the group (daemonised children) before giving up on the rest of their output.
DRAIN_AFTER_KILL = 1.0


class LocalTransport(Transport):
    """Runs commands on this machine whatever `host` names; the host only labels the result."""

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
        del remote_timeout  # here the deadline kills the command's whole session anyway
        started = time.monotonic()
        try:
            # A session of its own, so a timeout can kill the command and everything it started.
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            # What a shell would report, so a missing command looks the same here and over SSH.
            status = 127 if isinstance(exc, FileNotFoundError) else 126
            message = f"{args[0]}: {exc.strerror or exc}\n".encode()
            return CommandResult(host.name, status, b"", message, time.monotonic() - started)
        assert process.stdin and process.stdout and process.stderr
        stdout = asyncio.ensure_future(process.stdout.read())
        stderr = asyncio.ensure_future(process.stderr.read())
        feeder = asyncio.ensure_future(_feed(process.stdin, input))
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
                out, err = await asyncio.gather(stdout, stderr)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            done, _ = await asyncio.wait([stdout, stderr], timeout=DRAIN_AFTER_KILL)
            partial = [t.result() if t in done else b"" for t in (stdout, stderr)]
            raise CommandTimeout(
                host.name,
                f"{describe_command(args)} did not finish within {timeout:g} s and was killed",
                *partial,
            ) from None
        except asyncio.CancelledError:
            # An aborted run must not leave the command running behind it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())
            raise
        finally:
            for task in (stdout, stderr, feeder):
                task.cancel()
            await asyncio.gather(stdout, stderr, feeder, return_exceptions=True)
        code = process.returncode
        assert code is not None
        signal_name = _signal_name(-code) if code < 0 else None
        return CommandResult(
            host.name,
            None if code < 0 else code,
            out,
            err,
            time.monotonic() - started,
            signal_name,
        )

    async def close(self) -> None:
        """Nothing to release: every command ends with its process."""

    async def put_file(self, host: Host, data: bytes, path: str, mode: int = 0o644) -> None:
        check_remote_path(path)
        try:
            await asyncio.to_thread(_write_atomic, Path(path), data, mode)
        except OSError as exc:
            raise TransferFailed(host.name, f"cannot write {path}: {exc.strerror or exc}") from None

    async def get_file(self, host: Host, path: str) -> bytes:
        check_remote_path(path)
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise TransferFailed(host.name, f"cannot read {path}: {exc.strerror or exc}") from None


async def _feed(stdin: asyncio.StreamWriter, data: bytes | None) -> None:
    # A command that does not read its input must not fail the run: ignore a closed pipe.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            stdin.write(data)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)
