"""Drain and enable against real haproxies, with requests held open through them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from interlock.errors import InterlockError, UsageError
from interlock.lb.drain import (
    DrainTimeout,
    EnableTimeout,
    OnTimeout,
    drain,
    drain_targets,
    enable,
)
from interlock.lb.runtime import RuntimeClient, UnixSocketOpener
from interlock.lb.servers import find_by_address, find_server, list_servers
from lb.haproxy_lab import Backend, Haproxy, HeldRequest, Lab


async def admin_state(proxy: Haproxy, backend: str = "api", server: str = "web1") -> str:
    states = await proxy.client().show_servers_state(backend)
    return next(s.admin for s in states if s.server == server)


async def wait_for_sessions(proxy: Haproxy, count: int, server: str = "web1") -> None:
    """Until haproxy counts `count` sessions on the server (the held request reached it)."""
    for _ in range(200):
        if (await proxy.stat(server)).scur == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server} never had {count} sessions")


def single_server(lab: Lab, delay_ms: int, name: str = "haproxy") -> tuple[Backend, Haproxy]:
    web1 = lab.backend("web1", delay_ms=delay_ms)
    return web1, lab.haproxy({"api": [("web1", web1.address)]}, name=name)


def test_drain_waits_until_sessions_end(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=1500)

    async def scenario() -> None:
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        await wait_for_sessions(proxy, 1)
        assert held.task is not None and not held.task.done()
        report = await drain([proxy.client("lb1")], "api", "web1", timeout=30)
        (result,) = report.results
        assert (result.lb, result.backend, result.server) == ("lb1", "api", "web1")
        assert result.before.sessions == 1 and result.before.status == "UP"
        assert result.after.sessions == 0 and result.after.status == "DRAIN"
        assert result.peak_sessions == 1
        assert report.complete and not report.timed_out and not report.forced
        assert report.warning is None
        # The request ran to its end: the drain waited for it and did not cut it.
        assert (await held.reply()).startswith(b"HTTP/1.1 200")
        assert await admin_state(proxy) == "drain"

    asyncio.run(scenario())


def test_fail_on_timeout_raises_and_leaves_the_server_drained(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=2000)

    async def scenario() -> None:
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        await wait_for_sessions(proxy, 1)
        with pytest.raises(DrainTimeout) as caught:
            await drain(
                [proxy.client("lb1")], "api", "web1", timeout=0.5, on_timeout=OnTimeout.FAIL
            )
        message = str(caught.value)
        assert "within 0.5 s" in message
        assert "left in drain state on lb1:api/web1" in message
        (result,) = caught.value.report.results
        assert result.after.sessions == 1 and not result.drained
        assert await admin_state(proxy) == "drain"
        assert (await held.reply()).startswith(b"HTTP/1.1 200")

    asyncio.run(scenario())


def test_force_cuts_the_remaining_sessions(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=10_000)

    async def scenario() -> None:
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        await wait_for_sessions(proxy, 1)
        report = await drain(
            [proxy.client("lb1")], "api", "web1", timeout=0.3, on_timeout=OnTimeout.FORCE
        )
        (result,) = report.results
        assert report.timed_out and report.forced and report.complete
        assert result.forced and result.peak_sessions == 1 and result.after.sessions == 0
        # Cut, not answered: the client never gets the backend's 200.
        assert not (await held.reply()).startswith(b"HTTP/1.1 200")

    asyncio.run(scenario())


def test_continue_on_timeout_returns_a_warning(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=2000)

    async def scenario() -> None:
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        await wait_for_sessions(proxy, 1)
        report = await drain(
            [proxy.client("lb1")], "api", "web1", timeout=0.3, on_timeout=OnTimeout.CONTINUE
        )
        assert report.timed_out and not report.complete and not report.forced
        assert report.warning is not None and "lb1:api/web1 (1)" in report.warning
        assert await admin_state(proxy) == "drain"
        assert (await held.reply()).startswith(b"HTTP/1.1 200")

    asyncio.run(scenario())


def test_zero_timeout_checks_once_and_never_waits(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=2000)

    async def scenario() -> None:
        idle = await drain([proxy.client()], "api", "web1", timeout=0)
        assert idle.complete and not idle.timed_out
        await proxy.client().set_server_state("api", "web1", "ready")
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        await wait_for_sessions(proxy, 1)
        with pytest.raises(DrainTimeout, match="within 0 s"):
            await drain([proxy.client()], "api", "web1", timeout=0)
        assert held.task is not None and not held.task.done()
        await held.reply()

    asyncio.run(scenario())


def test_bad_bounds_are_usage_errors(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=0)

    async def scenario() -> None:
        with pytest.raises(UsageError, match="timeout"):
            await drain([proxy.client()], "api", "web1", timeout=-1)
        with pytest.raises(UsageError, match="poll"):
            await drain([proxy.client()], "api", "web1", timeout=1, poll=0)
        assert await admin_state(proxy) == "ready"  # refused before touching haproxy

    asyncio.run(scenario())


def test_every_haproxy_with_the_server_is_drained(lab: Lab) -> None:
    web1 = lab.backend("web1", delay_ms=1500)
    web2 = lab.backend("web2")
    lb_a = lab.haproxy({"api": [("web1", web1.address)]}, name="lb-a")
    lb_b = lab.haproxy({"api": [("web1", web1.address)]}, name="lb-b")
    lb_c = lab.haproxy({"other": [("web2", web2.address)]}, name="lb-c")  # no api backend

    async def scenario() -> None:
        clients = [lb_a.client("lb-a"), lb_b.client("lb-b", tcp=True), lb_c.client("lb-c")]
        held = [HeldRequest(lb_a.http_ports["api"]), HeldRequest(lb_b.http_ports["api"])]
        for request in held:
            await request.start()
        await wait_for_sessions(lb_a, 1)
        await wait_for_sessions(lb_b, 1)
        report = await drain(clients, "api", "web1", timeout=30)
        assert [r.lb for r in report.results] == ["lb-a", "lb-b"]
        assert all(r.before.sessions == 1 and r.after.sessions == 0 for r in report.results)
        assert await admin_state(lb_a) == "drain" and await admin_state(lb_b) == "drain"
        for request in held:
            assert (await request.reply()).startswith(b"HTTP/1.1 200")

        enabled = await enable(clients, "api", "web1", timeout=15)
        assert [r.lb for r in enabled.results] == ["lb-a", "lb-b"]
        assert all(r.before.status == "DRAIN" and r.after.status == "UP" for r in enabled.results)

    asyncio.run(scenario())


def test_an_unreachable_lb_stops_the_drain_before_anything_changes(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=0)
    gone = RuntimeClient("lb-gone", UnixSocketOpener(str(lab.directory / "gone.sock")))

    async def scenario() -> None:
        with pytest.raises(InterlockError, match=r"cannot tell which.*lb-gone"):
            await drain([proxy.client("lb1"), gone], "api", "web1", timeout=5)
        assert await admin_state(proxy) == "ready"
        with pytest.raises(InterlockError, match="no load balancer has server api/nosuch"):
            await drain([proxy.client("lb1")], "api", "nosuch", timeout=5)

    asyncio.run(scenario())


def test_enable_waits_for_health_checks(lab: Lab) -> None:
    web1, proxy = single_server(lab, delay_ms=0)

    async def scenario() -> None:
        client = proxy.client("lb1")
        await client.set_server_state("api", "web1", "maint")
        web1.terminate()
        with pytest.raises(
            EnableTimeout, match=r"not UP within 1 s: lb1:api/web1 is DOWN"
        ) as caught:
            await enable([client], "api", "web1", timeout=1)
        (result,) = caught.value.report.results
        assert result.before.status == "MAINT"
        assert await admin_state(proxy) == "ready"  # set ready; only its checks are failing

        lab.backend("web1", port=web1.port)
        report = await enable([client], "api", "web1", timeout=20)
        (result,) = report.results
        assert not result.before.is_up and result.after.status == "UP"

    asyncio.run(scenario())


def test_servers_are_found_by_address(lab: Lab) -> None:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    lb_a = lab.haproxy(
        {
            "api": [("web1", web1.address), ("web2", web2.address)],
            "admin": [("a1", web1.address)],
        },
        name="lb-a",
    )
    lb_b = lab.haproxy({"api": [("ctl-1", web1.address)]}, name="lb-b")

    async def scenario() -> None:
        clients = [lb_a.client("lb-a"), lb_b.client("lb-b")]
        targets = await find_by_address(clients, "127.0.0.1", web1.port)
        assert sorted(t.label for t in targets) == [
            "lb-a:admin/a1",
            "lb-a:api/web1",
            "lb-b:api/ctl-1",
        ]
        every = await find_by_address(clients, "127.0.0.1")
        assert len(every) == 4
        with pytest.raises(InterlockError, match=r"no load balancer has a server at 127\.0\.0\.2"):
            await find_by_address(clients, "127.0.0.2")

        report = await drain_targets(targets, timeout=10)
        assert report.complete and len(report.results) == 3
        assert await admin_state(lb_a, "api", "web1") == "drain"
        assert await admin_state(lb_a, "admin", "a1") == "drain"
        assert await admin_state(lb_a, "api", "web2") == "ready"
        assert await admin_state(lb_b, "api", "ctl-1") == "drain"

        by_name = await find_server(clients, "api", "web2")
        assert [t.label for t in by_name] == ["lb-a:api/web2"]

    asyncio.run(scenario())


def test_list_servers_reports_each_lb_or_its_error(lab: Lab) -> None:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    proxy = lab.haproxy({"api": [("web1", web1.address), ("web2", web2.address)]})
    gone = RuntimeClient("lb-gone", UnixSocketOpener(str(lab.directory / "gone.sock")))

    async def scenario() -> None:
        await proxy.client().set_server_state("api", "web2", "drain")
        listed = await list_servers([proxy.client("lb1"), gone])
        assert [lb.lb for lb in listed] == ["lb1", "lb-gone"]
        assert listed[0].error is None
        views = {v.server: v for v in listed[0].servers}
        assert (views["web1"].status, views["web1"].admin) == ("UP", "ready")
        assert (views["web2"].status, views["web2"].admin) == ("DRAIN", "drain")
        assert views["web2"].port == web2.port and views["web2"].address == "127.0.0.1"
        assert listed[1].servers == () and listed[1].error is not None
        assert "lb-gone" in listed[1].error

    asyncio.run(scenario())


def test_haproxy_without_show_servers_conn_is_drained_on_scur(tmp_path: Path) -> None:
    """Older haproxy lacks `show servers conn`: an admin socket replaying captured replies."""
    fixtures = Path(__file__).parent / "fixtures"
    replies = {
        b"show servers state api": (fixtures / "show_servers_state_up_idle.txt").read_bytes(),
        b"show stat 3 4 -1": (fixtures / "show_stat_drain_maint_sessions.txt").read_bytes(),
        b"show servers conn api": (fixtures / "reply_unknown_command.txt").read_bytes(),
        b"set server api/web1 state drain": (fixtures / "reply_set_ok.txt").read_bytes(),
    }
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).rstrip(b"\n")
        seen.append(command)
        writer.write(replies.get(command, replies[b"show servers conn api"]))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        path = str(tmp_path / "old.sock")
        server = await asyncio.start_unix_server(answer, path)
        try:
            client = RuntimeClient("old-lb", UnixSocketOpener(path))
            report = await drain([client], "api", "web1", timeout=0, on_timeout=OnTimeout.CONTINUE)
        finally:
            server.close()
        (result,) = report.results
        assert result.after.used_cur is None
        assert result.after.scur == 1 and result.after.sessions == 1
        assert report.timed_out and not report.complete
        assert b"set server api/web1 state drain" in seen

    asyncio.run(scenario())


def test_a_server_in_maintenance_stays_in_maintenance(lab: Lab) -> None:
    _, proxy = single_server(lab, delay_ms=0)

    async def scenario() -> None:
        await proxy.client().set_server_state("api", "web1", "maint")
        report = await drain([proxy.client()], "api", "web1", timeout=5)
        assert report.complete and report.results[0].after.status == "MAINT"
        assert await admin_state(proxy) == "maint"

    asyncio.run(scenario())
