"""`interlock lb …` against real haproxies: by socket, by TCP, through an inventory (SSH too)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from interlock.cli import lb
from interlock.errors import InterlockError
from lb.haproxy_lab import Haproxy, HeldRequest, Lab, Sshd


def run_cli(argv: Sequence[str]) -> int:
    """The lb command group the way `interlock` runs it: exit code, messages on stderr."""
    parser = argparse.ArgumentParser(prog="interlock")
    lb.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["lb", *argv])
        code: int = args.handler(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    except InterlockError as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


def two_servers(lab: Lab) -> Haproxy:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    return lab.haproxy({"api": [("web1", web1.address), ("web2", web2.address)]})


def admin_states(proxy: Haproxy) -> dict[str, str]:
    return {s.server: s.admin for s in asyncio.run(proxy.client().show_servers_state("api"))}


def test_servers_table_and_json(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = two_servers(lab)
    assert run_cli(["drain", "api/web2", "--socket", str(proxy.socket), "--timeout", "5"]) == 0
    capsys.readouterr()

    assert run_cli(["servers", "--socket", str(proxy.socket)]) == 0
    out = capsys.readouterr().out
    assert "sessions" in out and "queue" in out
    web2_line = next(line for line in out.splitlines() if "web2" in line)
    assert "DRAIN" in web2_line and "drain" in web2_line and "127.0.0.1:" in web2_line

    tcp = f"127.0.0.1:{proxy.admin_port}"
    assert run_cli(["servers", "--tcp", tcp, "--backend", "api", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["lb"] == tcp and listed["error"] is None
    assert [(s["server"], s["status"], s["admin"]) for s in listed["servers"]] == [
        ("web1", "UP", "ready"),
        ("web2", "DRAIN", "drain"),
    ]


def test_servers_unreachable_exits_1(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["servers", "--socket", str(lab.directory / "none.sock")]) == 1
    assert "cannot connect to unix:" in capsys.readouterr().err


def test_drain_and_enable(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = two_servers(lab)
    sock = ["--socket", str(proxy.socket)]
    assert run_cli(["drain", "api/web1", "--timeout", "10", "--json", *sock]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True and report["warning"] is None
    assert report["results"][0]["after"]["status"] == "DRAIN"
    assert admin_states(proxy) == {"web1": "drain", "web2": "ready"}

    assert run_cli(["enable", "api/web1", "--timeout", "15", *sock]) == 0
    assert "UP" in capsys.readouterr().out
    assert admin_states(proxy)["web1"] == "ready"


def test_drain_timeouts(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    slow = lab.backend("slow", delay_ms=2000)
    proxy = lab.haproxy({"api": [("web1", slow.address)]})
    sock = ["--socket", str(proxy.socket)]

    async def hold() -> HeldRequest:
        held = HeldRequest(proxy.http_ports["api"])
        await held.start()
        return held

    async def scenario() -> None:
        held = await hold()
        for _ in range(100):
            if (await proxy.stat("web1")).scur:
                break
            await asyncio.sleep(0.02)
        # The CLI runs its own event loop: run it in a thread while this loop holds the request.
        code = await asyncio.to_thread(run_cli, ["drain", "api/web1", "--timeout", "0.3", *sock])
        assert code == 1
        err = capsys.readouterr().err
        assert "within 0.3 s" in err and "left in drain state" in err
        code = await asyncio.to_thread(
            run_cli, ["drain", "api/web1", "--timeout", "0", "--on-timeout", "continue", *sock]
        )
        assert code == 0
        assert "sessions remain on local:api/web1 (1)" in capsys.readouterr().err
        await held.reply()

    asyncio.run(scenario())


def test_drain_by_address(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    proxy = lab.haproxy({"api": [("web1", web1.address), ("web2", web2.address)]})
    argv = ["drain", "--address", f"127.0.0.1:{web2.port}", "--socket", str(proxy.socket)]
    assert run_cli(argv) == 0
    assert admin_states(proxy) == {"web1": "ready", "web2": "drain"}


NO_SOCKET = ["--socket", "/nonexistent.sock"]


@pytest.mark.parametrize(
    "argv",
    [
        ["drain", *NO_SOCKET],
        ["drain", "api/web1", "--address", "127.0.0.1", *NO_SOCKET],
        ["drain", "api", *NO_SOCKET],
        ["drain", "api/web1", "--timeout", "-1", *NO_SOCKET],
        ["drain", "api/web1", "--on-timeout", "wait", *NO_SOCKET],
        ["drain", "--address", "127.0.0.1:http", *NO_SOCKET],
        ["servers", *NO_SOCKET, "--tcp", "127.0.0.1:1"],
        ["servers", "--lb", "lb1", *NO_SOCKET],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    # Each is refused before any socket is opened: the one named does not exist.
    assert run_cli(argv) == 2


def write_inventory(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.root  # the sshd fixture
def test_inventory_load_balancers(
    lab: Lab, sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web1 = lab.backend("web1")
    lb_a = lab.haproxy({"api": [("ctl1", web1.address)]}, name="lb-a")
    lb_b = lab.haproxy({"api": [("ctl1", web1.address)]}, name="lb-b")
    lb_c = lab.haproxy({"api": [("ctl1", web1.address)]}, name="lb-c")
    inventory = write_inventory(
        tmp_path / "inventory.yaml",
        f"""\
known_hosts: {sshd.known_hosts}
hosts:
  lbhost: {{address: 127.0.0.1, port: {sshd.port}, user: root, key: {sshd.client_key}}}
loadbalancers:
  lb-a: {{socket: {lb_a.socket}}}
  lb-b: {{tcp: "127.0.0.1:{lb_b.admin_port}"}}
  lb-c: {{host: lbhost, socket: {lb_c.socket}}}
""",
    )
    assert run_cli(["servers", "-i", inventory, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(lb["lb"], lb["error"]) for lb in listed] == [
        ("lb-a", None),
        ("lb-b", None),
        ("lb-c", None),
    ]
    assert listed[2]["address"] == f"ssh:lbhost:{lb_c.socket}"

    assert run_cli(["drain", "api/ctl1", "-i", inventory, "--timeout", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["lb"] for r in report["results"]] == ["lb-a", "lb-b", "lb-c"]
    assert all(admin_states(p) == {"ctl1": "drain"} for p in (lb_a, lb_b, lb_c))

    assert run_cli(["enable", "api/ctl1", "-i", inventory, "--lb", "lb-c"]) == 0
    assert admin_states(lb_c) == {"ctl1": "ready"}
    assert admin_states(lb_a) == {"ctl1": "drain"}

    assert run_cli(["servers", "-i", inventory, "--lb", "lb-z"]) == 2
    assert "no load balancer lb-z" in capsys.readouterr().err
