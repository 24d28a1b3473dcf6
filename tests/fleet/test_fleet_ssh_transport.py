"""SshTransport and fan_out against 20 real OpenSSH servers on loopback addresses."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from fleet.loopback_sshd import SshdFleet, free_port
from interlock.fleet.inventory import Host
from interlock.fleet.transport import (
    AuthenticationFailed,
    CommandFailed,
    CommandResult,
    CommandTimeout,
    HostKeyMismatch,
    HostKeyUnknown,
    HostOutcome,
    HostUnreachable,
    SshTransport,
    TransferFailed,
    fan_out,
)
from interlock.fleet.transport.ssh import login_shell_command, put_file_argv

pytestmark = pytest.mark.root

AWKWARD_ARGS = [
    "a b",
    "'single'",
    '"double"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "| touch PWNED",
    "*",
    "~",
    "back\\slash",
    "new\nline",
    "tab\t",
    "ümlaut ✓",
    "",
    "-n",
    "$HOME",
    "!!",
    "{a,b}",
]


def transport(fleet: SshdFleet, **options: object) -> SshTransport:
    return SshTransport.for_inventory(fleet.inventory(), **options)


def unreachable_host(fleet: SshdFleet) -> Host:
    """An address with nothing listening on the port: connections are refused."""
    return Host(name="gone", address="127.0.0.22", port=free_port("127.0.0.22"), user="root")


def test_fan_out_reaches_every_host_and_reports_the_unreachable_one(sshd_fleet: SshdFleet) -> None:
    hosts = [*sshd_fleet.hosts[:10], unreachable_host(sshd_fleet), *sshd_fleet.hosts[10:]]
    progress: list[tuple[str, int, int]] = []

    def record(outcome: HostOutcome[CommandResult], done: int, total: int) -> None:
        progress.append((outcome.host.name, done, total))

    async def scenario() -> list[HostOutcome[CommandResult]]:
        async with transport(sshd_fleet, connect_attempts=2, retry_delay=0.05) as ssh:
            return await fan_out(
                hosts,
                lambda h: ssh.run_script(h, 'set -- $SSH_CONNECTION; echo "$3 $4"'),
                window=24,
                progress=record,
            )

    outcomes = asyncio.run(scenario())
    assert [o.host for o in outcomes] == hosts
    for outcome in outcomes:
        if outcome.host.name == "gone":
            assert isinstance(outcome.error, HostUnreachable)
            assert outcome.reason is not None
            assert "connection refused (after 2 attempts)" in outcome.reason
            assert outcome.reason.startswith("127.0.0.22 port ")
        else:
            assert outcome.ok, outcome.reason
            assert outcome.value is not None
            # Each host answered from its own sshd: the server side of the connection.
            expected = f"{outcome.host.address} {outcome.host.port}\n".encode()
            assert outcome.value.stdout == expected
            assert outcome.value.exit_status == 0
    assert sorted(name for name, _, _ in progress) == sorted(h.name for h in hosts)
    assert [done for _, done, _ in progress] == list(range(1, 22))


def test_window_is_a_sliding_window_measured_on_the_servers(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    """Each command records its start and end on the server side.

    The first `window` commands wait until `window` have started (so the window is really
    used), and the first host's command waits until 10 others have finished: with fixed batches
    that could never happen and it would time out.
    """
    window = 5
    marks = tmp_path / "marks"
    marks.mkdir()
    script = """
        d=$1 me=$2 window=$3 wait_for=$4
        date +%s%N > "$d/$me.start"
        touch "$d/started.$me"
        while [ "$(ls "$d" | grep -c '^started\\.')" -lt "$window" ]; do sleep 0.01; done
        while [ "$(ls "$d" | grep -c '\\.end$')" -lt "$wait_for" ]; do sleep 0.01; done
        date +%s%N > "$d/$me.end.tmp" && mv "$d/$me.end.tmp" "$d/$me.end"
    """
    hosts = sshd_fleet.hosts

    async def scenario() -> list[HostOutcome[CommandResult]]:
        async with transport(sshd_fleet) as ssh:
            return await fan_out(
                hosts,
                lambda h: ssh.run_script(
                    h,
                    script,
                    args=[str(marks), h.name, str(window), "10" if h is hosts[0] else "0"],
                    timeout=60,
                ),
                window=window,
            )

    outcomes = asyncio.run(scenario())
    assert all(o.ok and o.value and o.value.ok for o in outcomes), [o.reason for o in outcomes]
    spans = {
        h.name: (
            int((marks / f"{h.name}.start").read_text()),
            int((marks / f"{h.name}.end").read_text()),
        )
        for h in hosts
    }
    events = sorted(
        [(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()]
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == window
    # While the slow host held its slot, 10 others finished; at most window - 1 of them were in
    # the first wave, so the rest started in slots freed meanwhile: the window slid.
    slow_end = spans[hosts[0].name][1]
    first_end = min(end for _, end in spans.values())
    finished_meanwhile = [n for n, (_, e) in spans.items() if e < slow_end]
    refilled = [n for n, (s, e) in spans.items() if first_end < s and e < slow_end]
    assert len(finished_meanwhile) >= 10
    assert len(refilled) >= 10 - (window - 1)


def test_one_connection_per_host_shared_by_concurrent_calls(sshd_fleet: SshdFleet) -> None:
    host = sshd_fleet.hosts[0]

    async def scenario() -> tuple[set[bytes], set[bytes], int]:
        async with transport(sshd_fleet) as ssh:
            first = await asyncio.gather(
                *(ssh.run_script(host, "echo $SSH_CONNECTION") for _ in range(12))
            )
            conn = await ssh.connection(host)
            conn.close()
            await conn.wait_closed()
            second = await asyncio.gather(
                *(ssh.run_script(host, "echo $SSH_CONNECTION") for _ in range(3))
            )
            return {r.stdout for r in first}, {r.stdout for r in second}, ssh.connections_opened

    first, second, opened = asyncio.run(scenario())
    # One TCP connection (same client port) for 12 concurrent commands; a new one after it closed.
    assert len(first) == 1
    assert len(second) == 1
    assert first != second
    assert opened == 2


def test_idle_connections_beyond_the_limit_are_closed(sshd_fleet: SshdFleet) -> None:
    hosts = sshd_fleet.hosts[:10]

    async def scenario() -> tuple[list[HostOutcome[CommandResult]], int, int]:
        async with transport(sshd_fleet, max_connections=3) as ssh:
            outcomes = await fan_out(hosts, lambda h: ssh.run(h, ["true"]), window=1)
            again = await ssh.run(hosts[0], ["true"])
            assert again.ok
            return outcomes, ssh.open_connections, ssh.connections_opened

    outcomes, still_open, opened = asyncio.run(scenario())
    assert all(o.ok for o in outcomes)
    assert still_open == 3
    # hosts[0] was closed as idle long before, so running on it again reconnected.
    assert opened == 11


def test_exit_status_output_and_signal(sshd_fleet: SshdFleet) -> None:
    host = sshd_fleet.hosts[1]

    async def scenario() -> tuple[CommandResult, CommandResult, CommandResult]:
        async with transport(sshd_fleet) as ssh:
            failed = await ssh.run(host, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            killed = await ssh.run(host, ["sh", "-c", "kill -TERM $$"])
            fed = await ssh.run(host, ["sh", "-c", "cat; echo end"], input=b"\x00\xffdata")
            return failed, killed, fed

    failed, killed, fed = asyncio.run(scenario())
    assert (failed.host, failed.exit_status, failed.stdout, failed.stderr) == (
        host.name,
        3,
        b"out\n",
        b"err\n",
    )
    with pytest.raises(CommandFailed, match=f"{host.name}: exit status 3: err"):
        failed.check()
    assert (killed.exit_status, killed.exit_signal) == (None, "TERM")
    with pytest.raises(CommandFailed, match="killed by signal TERM"):
        killed.check()
    assert fed.stdout == b"\x00\xffdataend\n"


def test_argv_arrives_verbatim_without_shell_injection(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    host = sshd_fleet.hosts[2]

    async def scenario() -> tuple[CommandResult, CommandResult]:
        async with transport(sshd_fleet) as ssh:
            direct = await ssh.run(
                host, ["sh", "-c", 'cd "$1" && shift && printf "%s\\0" "$@"', "sh", str(tmp_path),
                       *AWKWARD_ARGS],
            )  # fmt: skip
            script = await ssh.run_script(
                host, 'cd "$1" && shift && printf "%s\\0" "$@"', args=[str(tmp_path), *AWKWARD_ARGS]
            )
            return direct, script

    for result in asyncio.run(scenario()):
        assert result.ok, result.stderr
        assert result.stdout.decode().split("\0")[:-1] == AWKWARD_ARGS
    assert list(tmp_path.iterdir()) == []


def test_command_timeout_is_reported_and_the_remote_command_stops(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    host = sshd_fleet.hosts[3]
    pid_file = tmp_path / "pid"

    async def scenario() -> CommandResult:
        async with transport(sshd_fleet) as ssh:
            with pytest.raises(CommandTimeout) as caught:
                await ssh.run_script(
                    host, 'echo $$ > "$1"; echo started; exec sleep 60', args=[str(pid_file)],
                    timeout=0.5,
                )  # fmt: skip
            assert caught.value.host == host.name
            assert "did not finish within 0.5 s and was stopped" in caught.value.reason
            assert caught.value.stdout == b"started\n"
            # The connection stays usable after a timed-out session.
            return await ssh.run(host, ["true"])

    assert asyncio.run(scenario()).ok
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and "sleep" in _cmdline(pid):
        assert time.monotonic() < deadline, "the timed-out command kept running on the host"
        time.sleep(0.05)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


def test_timeouts_in_a_fan_out_are_per_host_failures(sshd_fleet: SshdFleet) -> None:
    hosts = sshd_fleet.hosts[:6]

    async def scenario() -> list[HostOutcome[CommandResult]]:
        async with transport(sshd_fleet) as ssh:
            return await fan_out(
                hosts,
                lambda h: ssh.run_script(
                    h, "sleep 30" if h is hosts[4] else "echo ok", timeout=1.5
                ),
                window=24,
            )

    outcomes = asyncio.run(scenario())
    assert [o.ok for o in outcomes] == [True, True, True, True, False, True]
    assert isinstance(outcomes[4].error, CommandTimeout)
    assert outcomes[4].reason == "sh -c 'sleep 30' sh did not finish within 1.5 s and was stopped"


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int, list[socket.socket]]]:
    """A TCP listener that accepts and never speaks SSH: connects must time out."""
    address = "127.0.0.23"
    server = socket.socket()
    server.bind((address, 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield address, server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_connect_timeout_and_limited_retries(
    sshd_fleet: SshdFleet, silent_listener: tuple[str, int, list[socket.socket]]
) -> None:
    address, port, accepted = silent_listener
    mute = Host(name="mute", address=address, port=port, key=str(sshd_fleet.client_key))

    async def scenario() -> None:
        async with transport(
            sshd_fleet, connect_timeout=0.3, connect_attempts=3, retry_delay=0.05
        ) as ssh:
            with pytest.raises(HostUnreachable) as caught:
                await ssh.run(mute, ["true"])
            assert caught.value.reason == (
                f"{address} port {port}: no SSH answer within 0.3 s (after 3 attempts)"
            )

    asyncio.run(scenario())
    # The kernel completed each handshake; give the accepting thread time to count them.
    deadline = time.monotonic() + 5
    while len(accepted) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(accepted) == 3


def _known_hosts_with(fleet: SshdFleet, path: Path, replace: dict[int, str | None]) -> Path:
    """The fleet's known_hosts with some servers' lines replaced (or left out, for None)."""
    lines = []
    for index, server in enumerate(fleet.servers):
        if index in replace:
            if replace[index] is not None:
                lines.append(replace[index])
        else:
            lines.append(server.known_hosts_line())
    path.write_text("".join(line for line in lines if line))
    return path


def test_host_key_mismatch_is_refused_unless_checking_is_off(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    impostor_key = asyncssh.generate_private_key("ssh-ed25519")
    target = sshd_fleet.servers[5]
    known_hosts = _known_hosts_with(
        sshd_fleet, tmp_path / "known_hosts", {5: target.known_hosts_line(impostor_key)}
    )
    hosts = sshd_fleet.hosts[4:7]

    async def scenario(**options: object) -> list[HostOutcome[CommandResult]]:
        ssh = SshTransport(known_hosts=str(known_hosts), **options)  # type: ignore[arg-type]
        async with ssh:
            return await fan_out(hosts, lambda h: ssh.run(h, ["true"]), window=24)

    checked = asyncio.run(scenario())
    assert [o.ok for o in checked] == [True, False, True]
    error = checked[1].error
    assert isinstance(error, HostKeyMismatch) and not isinstance(error, HostKeyUnknown)
    assert error.host == target.name
    assert target.host_key.get_fingerprint() in error.reason
    assert impostor_key.get_fingerprint() in error.reason
    assert "refusing to connect" in error.reason

    unchecked = asyncio.run(scenario(check_host_keys=False))
    assert all(o.ok for o in unchecked), [o.reason for o in unchecked]


def test_unknown_host_key_is_refused(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    known_hosts = _known_hosts_with(sshd_fleet, tmp_path / "known_hosts", {7: None})
    host = sshd_fleet.hosts[7]

    async def scenario() -> None:
        async with SshTransport(known_hosts=str(known_hosts)) as ssh:
            with pytest.raises(HostKeyUnknown, match=r"has no key for 127\.0\.0\.9 port"):
                await ssh.run(host, ["true"])
        async with SshTransport(known_hosts=str(tmp_path / "absent")) as ssh:
            with pytest.raises(HostKeyUnknown, match="absent does not exist"):
                await ssh.run(host, ["true"])

    asyncio.run(scenario())


def test_wrong_client_key_is_an_authentication_failure(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(stranger)
    host = sshd_fleet.host(sshd_fleet.servers[8], key=str(stranger))

    async def scenario() -> None:
        async with transport(sshd_fleet) as ssh:
            with pytest.raises(AuthenticationFailed, match="did not accept our key"):
                await ssh.run(host, ["true"])

    asyncio.run(scenario())


def test_put_and_get_round_trip_binary_with_mode(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    host = sshd_fleet.hosts[9]
    data = bytes(range(256)) * 4096 + b"\x00tail\r\n"
    target = tmp_path / "gate" / "policy-rc.d"
    target.parent.mkdir()
    target.write_bytes(b"old")

    async def scenario() -> bytes:
        async with transport(sshd_fleet) as ssh:
            await ssh.put_file(host, data, str(target), mode=0o755)
            return await ssh.get_file(host, str(target))

    assert asyncio.run(scenario()) == data
    assert target.read_bytes() == data
    assert target.stat().st_mode & 0o7777 == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["policy-rc.d"]


def test_put_is_atomic_for_concurrent_readers(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    host = sshd_fleet.hosts[10]
    target = tmp_path / "event.deferred"
    payloads = [bytes([n]) * (1024 * 1024) for n in (1, 2)]
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
            async with transport(sshd_fleet) as ssh:
                for round_ in range(8):
                    await ssh.put_file(host, payloads[round_ % 2], str(target))

        asyncio.run(scenario())
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 1
    assert set(seen) <= digests
    assert sorted(p.name for p in tmp_path.iterdir()) == ["event.deferred"]


def test_truncated_transfer_changes_nothing(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    host = sshd_fleet.hosts[11]
    target = tmp_path / "policy"
    target.write_bytes(b"original")

    async def scenario() -> CommandResult:
        async with transport(sshd_fleet) as ssh:
            # As if the connection dropped after 5 of 10 bytes.
            return await ssh.run(host, put_file_argv(str(target), 10, 0o644), input=b"short")

    result = asyncio.run(scenario())
    assert result.exit_status == 1
    assert b"received 5 of 10 bytes" in result.stderr
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


def test_file_errors_name_host_and_reason(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    host = sshd_fleet.hosts[12]

    async def scenario() -> None:
        async with transport(sshd_fleet) as ssh:
            with pytest.raises(TransferFailed) as caught:
                await ssh.get_file(host, str(tmp_path / "absent"))
            assert caught.value.host == host.name
            assert caught.value.reason.startswith(f"cannot read {tmp_path}/absent: ")
            assert "No such file or directory" in caught.value.reason
            with pytest.raises(TransferFailed, match=r"cannot write .*No such file or directory"):
                await ssh.put_file(host, b"x" * 100_000, str(tmp_path / "no" / "dir" / "f"))

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


def test_fleet_status_shape_one_script_per_host(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    """A fleet-wide read is one fan_out of one script per host; hosts differ only in state."""
    for server in sshd_fleet.servers[:3]:
        (tmp_path / f"{server.address}.deferred").write_text(
            f"service: cron\nhost: {server.name}\n"
        )
    probe = 'for f in "$1"/"$2".deferred; do [ -e "$f" ] && cat "$f"; done; exit 0'

    async def scenario() -> list[HostOutcome[CommandResult]]:
        async with transport(sshd_fleet) as ssh:
            return await fan_out(
                sshd_fleet.hosts,
                lambda h: ssh.run_script(h, probe, args=[str(tmp_path), h.address]),
                window=24,
            )

    outcomes = asyncio.run(scenario())
    with_events = [o.host.name for o in outcomes if o.value and o.value.stdout]
    assert with_events == ["h01", "h02", "h03"]
    assert outcomes[0].value is not None
    assert outcomes[0].value.stdout == b"service: cron\nhost: h01\n"


def test_a_bounded_command_runs_without_a_timeout_process_on_the_host(
    sshd_fleet: SshdFleet,
) -> None:
    """`remote_timeout=False` (fact reads) spares each host the `timeout` process; the deadline
    is still kept here."""
    host = sshd_fleet.hosts[2]
    parent = ["sh", "-c", "tr '\\0' ' ' < /proc/$PPID/cmdline"]

    async def scenario() -> tuple[CommandResult, CommandResult, str]:
        async with transport(sshd_fleet) as ssh:
            wrapped = await ssh.run(host, parent, timeout=10)
            bare = await ssh.run(host, parent, timeout=10, remote_timeout=False)
            with pytest.raises(CommandTimeout) as caught:
                await ssh.run(host, ["sleep", "2"], timeout=0.5, remote_timeout=False)
            return wrapped, bare, caught.value.reason

    wrapped, bare, reason = asyncio.run(scenario())
    assert wrapped.stdout.decode().startswith("timeout -k ")
    assert "timeout" not in bare.stdout.decode()
    assert "did not finish within 0.5 s" in reason


@pytest.mark.parametrize("login_shell", ["bash", "dash"])
def test_a_bash_script_runs_the_same_whatever_the_login_shell(login_shell: str) -> None:
    """The command line a bounded `bash -c` gets, run by the login shell as sshd would: bash
    runs the script itself, any other shell execs bash; the arguments arrive intact."""
    script = 'printf "%s|" "$@"; printf "%s\\n" "${BASH_VERSION:+bash}"; exit 3'
    argv = ["bash", "-c", script, "name", "a b", "c'd", "$(x)", ""]
    command = login_shell_command(argv)
    result = subprocess.run([login_shell, "-c", command], capture_output=True, text=True)
    direct = subprocess.run(argv, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (3, "a b|c'd|$(x)||bash\n", "")
    assert (result.returncode, result.stdout) == (direct.returncode, direct.stdout)


def test_a_bounded_bash_script_runs_in_the_login_shell(sshd_fleet: SshdFleet) -> None:
    host = sshd_fleet.hosts[1]
    # Its own shell's command line: the login shell's (sshd's `bash -c LINE`), not a second bash.
    argv = ["bash", "-c", 'tr "\\0" " " < /proc/$$/cmdline; printf "|%s" "$@"', "n", "x y"]

    async def scenario() -> CommandResult:
        async with transport(sshd_fleet) as ssh:
            return await ssh.run(host, argv, timeout=10, remote_timeout=False)

    result = asyncio.run(scenario())
    assert result.ok, result.stderr
    own, _, args = result.stdout.decode().rpartition("|")
    assert "BASH_VERSION" in own and args == "x y"
