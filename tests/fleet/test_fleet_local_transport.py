"""LocalTransport: real subprocesses and files on this machine."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import pytest

from interlock.errors import UsageError
from interlock.fleet.inventory import Host
from interlock.fleet.transport import (
    CommandFailed,
    CommandTimeout,
    LocalTransport,
    TransferFailed,
)

HOST = Host(name="here", address="127.0.0.1")
AWKWARD_ARGS = [
    "a b",
    "'single'",
    '"double"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "*",
    "~",
    "back\\slash",
    "new\nline",
    "tab\t",
    "ümlaut ✓",
    "",
    "-n",
    "$HOME",
]


def test_output_exit_status_and_input() -> None:
    async def scenario() -> None:
        transport = LocalTransport()
        result = await transport.run(
            HOST, ["sh", "-c", "cat; echo err >&2; exit 3"], input=b"fed\x00bytes"
        )
        assert (result.host, result.exit_status, result.exit_signal) == ("here", 3, None)
        assert (result.stdout, result.stderr) == (b"fed\x00bytes", b"err\n")
        assert not result.ok
        with pytest.raises(CommandFailed, match="here: exit status 3: err"):
            result.check()
        await transport.close()

    asyncio.run(scenario())


def test_argv_arrives_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        result = await LocalTransport().run(HOST, ["printf", "%s\\0", *AWKWARD_ARGS])
        assert result.stdout.decode().split("\0")[:-1] == AWKWARD_ARGS

    monkeypatch.chdir(tmp_path)
    asyncio.run(scenario())
    assert not (tmp_path / "PWNED").exists()


def test_run_script_passes_args_positionally() -> None:
    async def scenario() -> None:
        result = await LocalTransport().run_script(
            HOST, 'printf "%s|" "$@"; printf "%s" "$0"', args=["x y", "$(id)"]
        )
        assert result.stdout == b"x y|$(id)|sh"

    asyncio.run(scenario())


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"

    async def scenario() -> None:
        with pytest.raises(CommandTimeout) as caught:
            await LocalTransport().run(
                HOST,
                ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started; wait"],
                timeout=0.5,
            )
        assert caught.value.host == "here"
        assert "did not finish within 0.5 s" in caught.value.reason
        assert caught.value.stdout == b"started\n"

    asyncio.run(scenario())
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and _state(child) != "Z":
        assert time.monotonic() < deadline, "the background child outlived the timeout"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"


def test_killed_by_signal_has_no_exit_status() -> None:
    result = asyncio.run(LocalTransport().run(HOST, ["sh", "-c", "kill -TERM $$"]))
    assert (result.exit_status, result.exit_signal) == (None, "TERM")


def test_missing_command_is_127_like_a_shell() -> None:
    result = asyncio.run(LocalTransport().run(HOST, ["/nonexistent/tool", "x"]))
    assert result.exit_status == 127
    assert b"/nonexistent/tool" in result.stderr


def test_bad_argv_is_refused() -> None:
    with pytest.raises(UsageError, match="argv list"):
        asyncio.run(LocalTransport().run(HOST, "echo hi"))
    with pytest.raises(UsageError, match="empty command"):
        asyncio.run(LocalTransport().run(HOST, []))
    with pytest.raises(UsageError, match="invalid argument"):
        asyncio.run(LocalTransport().run(HOST, ["echo", "a\0b"]))


def test_put_and_get_round_trip_with_mode(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1024
    target = tmp_path / "blob.bin"

    async def scenario() -> bytes:
        transport = LocalTransport()
        await transport.put_file(HOST, data, str(target), mode=0o640)
        return await transport.get_file(HOST, str(target))

    assert asyncio.run(scenario()) == data
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]


def test_put_is_atomic_for_concurrent_readers(tmp_path: Path) -> None:
    target = tmp_path / "policy"
    payloads = [bytes([n]) * (2 * 1024 * 1024) for n in (1, 2)]
    digests = {hashlib.sha256(p).digest() for p in payloads}
    target.write_bytes(payloads[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(hashlib.sha256(target.read_bytes()).digest())

    thread = threading.Thread(target=reader)
    thread.start()
    try:

        async def scenario() -> None:
            transport = LocalTransport()
            for round_ in range(10):
                await transport.put_file(HOST, payloads[round_ % 2], str(target))

        asyncio.run(scenario())
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) <= digests


def test_file_errors_name_host_and_path(tmp_path: Path) -> None:
    with pytest.raises(TransferFailed, match=r"here: cannot read .*absent: No such file"):
        asyncio.run(LocalTransport().get_file(HOST, str(tmp_path / "absent")))
    with pytest.raises(TransferFailed, match=r"cannot write .*: No such file"):
        asyncio.run(LocalTransport().put_file(HOST, b"x", str(tmp_path / "no" / "dir")))
    with pytest.raises(UsageError, match="must be absolute"):
        asyncio.run(LocalTransport().put_file(HOST, b"x", "relative/path"))
