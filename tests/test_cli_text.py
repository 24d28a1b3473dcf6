"""Text read from hosts is data: never rich markup, never terminal control sequences.

A ledger reason `File(s) changed: [/etc/nova/nova.conf]` once crashed `interlock show` and
`fleet status` (rich read it as markup), `[link=…]` became a hyperlink, and escape sequences
in a reason reached the operator's terminal. Each output is checked with hostile values: the
host's own (table) view, the fleet view built from the real probe script's output, the live
rollout display and the rollout log.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from interlock.cli import fleet as fleet_cli
from interlock.cli.main import main
from interlock.facts import ledger as ledger_fact
from interlock.fleet.inventory import Host
from interlock.fleet.status import FleetStatus, HostDebt
from interlock.rollout import events
from interlock.rollout.events import Event, TextLog
from interlock.rollout.progress import ProgressView

BRACKETS = "File(s) changed: [/etc/nova/nova.conf]"
LINK = "[link=https://evil.example/]click[/link] [bold red]alarm[/]"
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c"
HOSTILE_REASONS = (BRACKETS, LINK, ESCAPES)
# What a person must see instead of each: the text as written, escapes shown as escapes.
SHOWN = (
    BRACKETS,
    LINK,
    "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\x1b[0m \\u202eevil\\u202c",
)
HOOK_COMMAND = ["puppet", "agent", "[link=https://evil.example/]x[/link]", "\x1b[2J"]


def write_event(ledger: Path, number: int, service: str, reason: str, requestor: str) -> None:
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / f"charm-{number}.deferred").write_text(
        json.dumps(
            {
                "action": "restart",
                "policy_requestor_name": requestor,
                "policy_requestor_type": "charm",
                "reason": reason,
                "service": service,
                "timestamp": int(time.time()) - 60,
            }
        )
    )


def hostile_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    ledger = root / "var/lib/policy-rc.d"
    for number, reason in enumerate(HOSTILE_REASONS):
        write_event(ledger, number, f"svc{number}", reason, "[bold]evil\x1b[5m")
    hooks = root / "var/lib/interlock/hooks"
    hooks.mkdir(parents=True)
    (hooks / "config-changed.hook").write_text(
        json.dumps({"name": "config-changed", "command": HOOK_COMMAND, "timestamp": 1.0})
    )
    return root


def assert_inert(text: str) -> None:
    """Nothing a terminal would act on: no escape or control character, no OSC 8 hyperlink."""
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)


def test_show_table_prints_reasons_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hostile_root(tmp_path)
    assert main(["--root", str(root), "show"]) == 0
    out, err = capsys.readouterr()
    assert_inert(out + err)
    flat = " ".join(out.split())
    for shown in SHOWN:
        assert " ".join(shown.split()) in flat
    assert "[bold]evil\\x1b[5m" in out
    assert "[link=https://evil.example/]x[/link] \\x1b[2J" in out


def test_charm_and_json_formats_escape_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hostile_root(tmp_path)
    assert main(["--root", str(root), "show", "--format", "charm"]) == 0
    charm = capsys.readouterr().out
    assert_inert(charm)
    assert BRACKETS in charm and "[link=https://evil.example/]click[/link]" in charm
    assert main(["--root", str(root), "show", "--json"]) == 0
    shown = capsys.readouterr().out
    assert_inert(shown)
    assert {e["reason"] for e in json.loads(shown)["restarts"]} == set(HOSTILE_REASONS)


def probe_output(tmp_path: Path, marker: str) -> str:
    """The real fleet probe script, run on this machine against the hostile test ledger."""
    root = hostile_root(tmp_path)
    (root / "var/lib/policy-rc.d/broken\x1b[2J.deferred").write_text("service: [unclosed\n")
    argv = ledger_fact.command(
        marker, str(root / "var/lib/policy-rc.d"), str(root / "var/lib/interlock/hooks")
    )
    output = subprocess.run(argv, capture_output=True, check=True).stdout
    return output.decode("utf-8", "surrogateescape")


def test_fleet_status_table_and_lines_are_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = "@@interlock-test"
    host = Host(name="cmp1", address="192.0.2.10", groups=("computes",))
    debt = HostDebt(host, ledger_fact.parse(probe_output(tmp_path, marker), marker, host.name))
    assert len(debt.events) == 3 and debt.problems
    down = Host(name="cmp2", address="192.0.2.11")
    status = FleetStatus([debt], [(down, "refused: [red]no\x1b[2J")], 0.5)
    fleet_cli.show_status(status)
    out, err = capsys.readouterr()
    assert_inert(out + err)
    flat = " ".join(out.split())
    for shown in SHOWN:
        assert " ".join(shown.split()) in flat
    assert "refused: [red]no\\x1b[2J" in err
    assert "broken\\x1b[2J.deferred" in err


def render(view: ProgressView) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(view.render())
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def test_rollout_progress_and_log_show_details_as_text() -> None:
    view = ProgressView()
    view(
        Event(
            events.RUN_STARTED,
            "r1",
            data={"batches": [{"id": "b1", "stage": "canary", "hosts": ["cmp1", "cmp2"]}]},
        )
    )
    view(Event(events.HOST_STARTED, "r1", batch="b1", host="cmp1"))
    view(Event(events.STEP_STARTED, "r1", batch="b1", host="cmp1", step="[blink]restart"))
    view(Event(events.GATE_WAITING, "r1", batch="b1", host="cmp1", detail=LINK))
    failed = Event(
        events.HOST_FINISHED, "r1", batch="b1", host="cmp2", state="failed", detail=ESCAPES
    )
    view(failed)
    shown = render(view)
    assert_inert(shown)
    assert "[blink]restart" in shown and "[link=https://evil.example/]click[/link]" in shown
    assert "\\x1b[2J" in shown
    log = io.StringIO()
    TextLog(log)(failed)
    assert_inert(log.getvalue())
    assert "\\x1b]0;owned\\x07" in log.getvalue()


def test_rollout_plan_shows_commands_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  h1: {address: 127.0.0.1}\n")
    command = "echo '\x1b]0;owned\x07[link=https://evil.example/]x[/link]'"
    argv = ["rollout", "plan", "-i", str(inventory), "--transport", "local", "--command", command]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert_inert(shown)
    assert "\\x1b]0;owned\\x07[link=https://evil.example/]x[/link]" in shown
