"""Parsers on replies captured from Debian's haproxy 2.6 (fixtures/, one file per state).

The captures came from haproxy fronting HTTP servers on loopback: all UP and idle; one server
drained and one in maintenance while requests were in flight ("sessions") and after they ended
("idle"); a server whose process was killed, captured while failing checks ("going_down", status
"UP 1/2") and after ("down"); the process restarted ("going_up", "DOWN 1/2"); and a backend with
`maxconn 1` and requests queued, plus a configured-`disabled` IPv6 server ("queue").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.lb.stats import (
    ReplyFormatError,
    ServerState,
    parse_show_servers_conn,
    parse_show_servers_state,
    parse_show_stat,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def servers_by_name(states: list[ServerState]) -> dict[str, ServerState]:
    return {f"{s.backend}/{s.server}": s for s in states}


def test_show_stat_all_up() -> None:
    rows = parse_show_stat(fixture("show_stat_up_idle.txt"))
    kinds = {(row.proxy, row.name): row.kind for row in rows}
    assert kinds == {
        ("fe", "FRONTEND"): "frontend",
        ("api", "web1"): "server",
        ("api", "web2"): "server",
        ("api", "web3"): "server",
        ("api", "BACKEND"): "backend",
        ("other", "o1"): "server",
        ("other", "BACKEND"): "backend",
    }
    web1 = next(row for row in rows if row.name == "web1")
    assert (web1.status, web1.scur, web1.qcur, web1.addr) == ("UP", 0, 0, "127.0.0.1:18081")
    assert web1.check_status == "L7OK"
    assert web1.is_up
    o1 = next(row for row in rows if row.name == "o1")
    assert (o1.status, o1.check_status, o1.is_up) == ("DOWN", "L4CON", False)
    frontend = rows[0]
    assert frontend.qcur is None and frontend.addr is None


def test_show_stat_drain_and_maint_with_sessions() -> None:
    rows = {row.name: row for row in parse_show_stat(fixture("show_stat_drain_maint_sessions.txt"))}
    assert (rows["web1"].status, rows["web1"].scur) == ("DRAIN", 1)
    assert (rows["web2"].status, rows["web2"].scur) == ("MAINT", 1)
    assert (rows["web3"].status, rows["web3"].scur) == ("UP", 2)
    assert rows["FRONTEND"].scur == 4
    assert not rows["web1"].is_up


def test_show_stat_drain_and_maint_idle() -> None:
    rows = {row.name: row for row in parse_show_stat(fixture("show_stat_drain_maint_idle.txt"))}
    assert [rows[n].scur for n in ("web1", "web2", "web3")] == [0, 0, 0]
    assert (rows["web1"].status, rows["web2"].status) == ("DRAIN", "MAINT")
    assert rows["web1"].stot == 1  # the one request it served before the drain


def test_show_stat_transitions() -> None:
    going_down = {row.name: row for row in parse_show_stat(fixture("show_stat_going_down.txt"))}
    down = {row.name: row for row in parse_show_stat(fixture("show_stat_down.txt"))}
    going_up = {row.name: row for row in parse_show_stat(fixture("show_stat_going_up.txt"))}
    assert going_down["web3"].status == "UP 1/2"
    assert down["web3"].status == "DOWN"
    assert going_up["web3"].status == "DOWN 1/2"
    # Only a plain UP counts as up: a server half way through its checks does not.
    assert not going_down["web3"].is_up and not going_up["web3"].is_up


def test_show_stat_queue_and_ipv6_address() -> None:
    rows = {(r.proxy, r.name): r for r in parse_show_stat(fixture("show_stat_queue.txt"))}
    assert rows[("queued", "BACKEND")].qcur == 2
    assert rows[("queued", "q1")].scur == 1
    assert rows[("queued", "q6")].status == "MAINT"
    assert rows[("queued", "q6")].addr == "[::1]:18082"


def test_show_servers_state_up() -> None:
    states = servers_by_name(parse_show_servers_state(fixture("show_servers_state_up_idle.txt")))
    assert list(states) == ["api/web1", "api/web2", "api/web3", "other/o1"]
    web1 = states["api/web1"]
    assert (web1.backend_id, web1.server_id, web1.address, web1.port) == (3, 1, "127.0.0.1", 18081)
    assert (web1.admin, web1.operational, web1.user_weight, web1.fqdn) == (
        "ready",
        "running",
        1,
        None,
    )
    assert states["other/o1"].operational == "stopped"


def test_show_servers_state_admin_bits() -> None:
    states = servers_by_name(
        parse_show_servers_state(fixture("show_servers_state_drain_maint_sessions.txt"))
    )
    assert states["api/web1"].admin_state == 8
    assert states["api/web1"].admin == "drain" and states["api/web1"].draining
    assert states["api/web1"].operational == "running"  # a drained server keeps its checks
    assert states["api/web2"].admin_state == 1
    assert states["api/web2"].admin == "maint" and states["api/web2"].in_maintenance
    assert states["api/web3"].admin == "ready"


def test_show_servers_state_configured_disabled_ipv6() -> None:
    states = servers_by_name(parse_show_servers_state(fixture("show_servers_state_queue.txt")))
    q6 = states["queued/q6"]
    # `disabled` in the config is CMAINT (4) on top of the forced maintenance bit (1).
    assert (q6.admin_state, q6.admin, q6.address, q6.port) == (5, "maint", "::1", 18082)


def test_show_servers_state_down_and_going_up() -> None:
    down = servers_by_name(parse_show_servers_state(fixture("show_servers_state_down.txt")))
    going_up = servers_by_name(parse_show_servers_state(fixture("show_servers_state_going_up.txt")))
    assert (down["api/web3"].operational, down["api/web3"].admin) == ("stopped", "ready")
    assert going_up["api/web3"].operational == "stopped"


def test_show_servers_conn() -> None:
    busy = {
        f"{c.backend}/{c.server}": c
        for c in parse_show_servers_conn(fixture("show_servers_conn_drain_maint_sessions.txt"))
    }
    assert [busy[n].used_cur for n in ("api/web1", "api/web2", "api/web3", "other/o1")] == [
        1,
        1,
        2,
        0,
    ]
    assert busy["api/web3"].idle_cur == 2
    assert (busy["api/web1"].address, busy["api/web1"].port) == ("127.0.0.1", 18081)
    idle = parse_show_servers_conn(fixture("show_servers_conn_drain_maint_idle.txt"))
    assert all(c.used_cur == 0 for c in idle)
    queue = {c.server: c for c in parse_show_servers_conn(fixture("show_servers_conn_queue.txt"))}
    assert queue["q1"].used_cur == 1 and queue["q6"].address == "::1"


@pytest.mark.parametrize(
    "name",
    [
        "reply_no_such_backend.txt",
        "reply_no_such_server.txt",
        "reply_permission_denied.txt",
        "reply_unknown_command.txt",
        "reply_set_ok.txt",
    ],
)
def test_error_replies_are_not_parsed_as_data(name: str) -> None:
    text = fixture(name)
    for parse in (parse_show_stat, parse_show_servers_state, parse_show_servers_conn):
        with pytest.raises(ReplyFormatError):
            parse(text)


def test_truncated_rows_are_rejected_with_line_number() -> None:
    text = fixture("show_servers_state_up_idle.txt")
    truncated = [*text.splitlines()[:3], "3 api 2 web2 127.0.0.1"]
    with pytest.raises(ReplyFormatError, match="line 4 has 5 fields"):
        parse_show_servers_state("\n".join(truncated))
    stat = fixture("show_stat_up_idle.txt").splitlines()
    with pytest.raises(ReplyFormatError, match="line 3"):
        parse_show_stat("\n".join([*stat[:2], "api,web1,0,0"]))


def test_header_order_is_what_counts() -> None:
    # Columns are looked up by name: the same data with columns swapped parses the same.
    lines = fixture("show_servers_conn_drain_maint_sessions.txt").splitlines()
    header = lines[0].split()
    swapped = [header[0], *header[1:7], header[8], header[7], *header[9:]]
    rows = [line.split() for line in lines[1:] if line]
    moved = [[*r[:6], r[7], r[6], *r[8:]] for r in rows]
    text = "\n".join([" ".join(swapped), *(" ".join(r) for r in moved)])
    assert [c.used_cur for c in parse_show_servers_conn(text)] == [1, 1, 2, 0]
