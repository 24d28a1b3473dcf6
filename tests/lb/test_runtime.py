"""The runtime-API client against a real haproxy: transports, whole replies, error replies."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.errors import InterlockError
from interlock.lb.runtime import (
    LbUnreachable,
    RuntimeApiError,
    RuntimeClient,
    TcpOpener,
    UnixSocketOpener,
    UnknownCommand,
)
from interlock.lb.stats import parse_show_stat
from lb.haproxy_lab import Lab, free_port


def test_unix_and_tcp_sockets_see_the_same_servers(lab: Lab) -> None:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    proxy = lab.haproxy({"api": [("web1", web1.address), ("web2", web2.address)]})

    async def scenario() -> None:
        for client in (proxy.client("unix"), proxy.client("tcp", tcp=True)):
            states = await client.show_servers_state()
            assert [(s.server, s.port, s.admin) for s in states] == [
                ("web1", web1.port, "ready"),
                ("web2", web2.port, "ready"),
            ]
            stats = await client.show_stat(states[0].backend_id)
            assert {(row.proxy, row.name) for row in stats} == {("api", "web1"), ("api", "web2")}
            # By name, haproxy picks the frontend called "api" too: no servers there.
            assert len(parse_show_stat(await client.execute("show stat api 4 -1"))) == 0
            conns = await client.show_servers_conn("api")
            assert [c.server for c in conns] == ["web1", "web2"]

    asyncio.run(scenario())


def test_state_changes_and_error_replies(lab: Lab) -> None:
    web1 = lab.backend("web1")
    proxy = lab.haproxy({"api": [("web1", web1.address)]})

    async def scenario() -> None:
        client = proxy.client("lb-a")
        await client.set_server_state("api", "web1", "drain")
        assert (await client.show_servers_state("api"))[0].admin == "drain"
        await client.set_server_state("api", "web1", "maint")
        assert (await client.show_servers_state("api"))[0].admin == "maint"
        await client.set_server_state("api", "web1", "ready")
        assert (await client.show_servers_state("api"))[0].admin == "ready"
        await client.shutdown_sessions("api", "web1")

        with pytest.raises(RuntimeApiError) as caught:
            await client.set_server_state("nosuch", "x", "drain")
        assert caught.value.lb == "lb-a"
        assert caught.value.command == "set server nosuch/x state drain"
        assert caught.value.reply.strip() == "No such backend."
        assert "lb-a" in str(caught.value) and "No such backend." in str(caught.value)

        with pytest.raises(RuntimeApiError, match=r"No such server\."):
            await client.set_server_state("api", "nosuch", "drain")
        with pytest.raises(RuntimeApiError, match=r"No such server\."):
            await client.shutdown_sessions("api", "nosuch")
        with pytest.raises(UnknownCommand, match="Unknown command"):
            await client.act("frobnicate server api/web1")
        with pytest.raises(RuntimeApiError, match="show servers state nosuch"):
            await client.show_servers_state("nosuch")

        user = RuntimeClient("lb-user", TcpOpener("127.0.0.1", proxy.user_port))
        assert len(await user.show_servers_state()) == 1  # reading is allowed at level user
        with pytest.raises(RuntimeApiError, match="Permission denied"):
            await user.set_server_state("api", "web1", "drain")
        assert (await client.show_servers_state("api"))[0].admin == "ready"

    asyncio.run(scenario())


def test_bad_names_and_commands_never_reach_haproxy() -> None:
    # The opener would fail if the client tried to connect: these are refused before that.
    client = RuntimeClient("lb", UnixSocketOpener("/nonexistent/admin.sock"))

    async def scenario() -> None:
        for backend, server in [("api", "web1 state ready;"), ("api x", "w"), ("", "w")]:
            with pytest.raises(InterlockError, match="invalid haproxy backend or server name"):
                await client.set_server_state(backend, server, "drain")
        with pytest.raises(InterlockError, match="separator"):
            await client.execute("show stat\nshutdown sessions server api/web1")
        with pytest.raises(InterlockError, match="must be one of"):
            await client.set_server_state("api", "web1", "down")

    asyncio.run(scenario())


def test_long_reply_is_read_to_the_end(lab: Lab) -> None:
    # 400 servers make `show stat` far larger than one socket read.
    extra = "backend big\n    server-template big 1-400 127.0.0.1:9 disabled\n"
    web1 = lab.backend("web1")
    proxy = lab.haproxy({"api": [("web1", web1.address)]}, extra=extra)

    async def scenario() -> None:
        client = proxy.client()
        raw = await client.execute("show stat")
        assert len(raw) > 65536  # more than the client reads at once
        rows = await client.show_stat()
        assert sum(1 for row in rows if row.proxy == "big" and row.kind == "server") == 400
        states = await client.show_servers_state("big")
        assert len(states) == 400 and all(s.admin == "maint" for s in states)

    asyncio.run(scenario())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_unreachable_and_silent_admin_sockets(silent_server: int) -> None:
    async def scenario() -> None:
        missing = RuntimeClient("lb-gone", UnixSocketOpener("/nonexistent/admin.sock"))
        with pytest.raises(LbUnreachable, match=r"lb-gone.*cannot connect to unix:/nonexistent"):
            await missing.show_stat()
        refused = RuntimeClient("lb-tcp", TcpOpener("127.0.0.1", free_port()))
        with pytest.raises(LbUnreachable, match=r"lb-tcp.*cannot connect to tcp:127\.0\.0\.1"):
            await refused.show_servers_state()
        silent = RuntimeClient("lb-silent", TcpOpener("127.0.0.1", silent_server), read_timeout=0.3)
        with pytest.raises(LbUnreachable, match=r"no complete reply to 'show stat'.*within 0\.3 s"):
            await silent.show_stat()

    asyncio.run(scenario())


def test_tcp_address_parsing() -> None:
    assert TcpOpener.parse("10.200.0.6:9999").address == "tcp:10.200.0.6:9999"
    assert TcpOpener.parse("[::1]:9999").host == "::1"
    for bad in ("10.200.0.6", ":9999", "host:0", "host:http"):
        with pytest.raises(InterlockError, match="HOST:PORT"):
            TcpOpener.parse(bad)


def test_a_reply_that_does_not_parse_names_the_problem(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "show_servers_state_up_idle.txt"
    truncated = "\n".join([*fixture.read_text().splitlines()[:3], "3 api 2 web2 127.0.0.1", ""])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(truncated.encode())
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        path = str(tmp_path / "cut.sock")
        server = await asyncio.start_unix_server(answer, path)
        try:
            client = RuntimeClient("lb-cut", UnixSocketOpener(path))
            with pytest.raises(RuntimeApiError, match=r"unexpected reply: .*line 4 has 5 fields"):
                await client.show_servers_state()
        finally:
            server.close()

    asyncio.run(scenario())
