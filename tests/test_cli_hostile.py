"""Every `interlock` command, with hostile arguments: exit ≠ 0, one line on stderr, no traceback.

The commands come from the argparse parser itself, so a new command is swept as soon as it is
registered; an option whose kind this file does not know fails the sweep until it is added to
KINDS (with the values that are wrong for it). Each case changes one argument of a command
line that is otherwise harmless: a --root tree in a temporary directory, an inventory whose
only host refuses connections, a journal that does not exist yet, a lab that is never built
(`--hosts 0`), and no --yes. Tripwires stop the sweep if a case reaches a lab, a demo, a
service manager or a rollout's execution, so a value that slips through cannot do anything.

Everything runs in this process through `interlock.cli.main.main`, so the sweep takes seconds.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cli_commands import Command, commands
from interlock.cli.main import main

LONG = "a" * 5000
ESCAPES = "\x1b]0;owned\x07\x1b[2J"
# Values that are no sensible name of anything: a path escape, a shell injection, terminal
# control sequences, a very long string, nothing.
NAMES = ["../../etc/passwd", "-x; rm -rf /", ESCAPES, LONG, ""]
SECONDS = ["-5", "0", "nan", "inf", "1e999", "abc", "9" * 5000, ESCAPES]
SECONDS_OR_ZERO = [v for v in SECONDS if v != "0"]
COUNTS = ["-5", "0", "abc", "1.5", "9" * 5000, ESCAPES]
COUNTS_OR_ZERO = [v for v in COUNTS if v != "0"]
DURATIONS = [*SECONDS, "5 parsecs"]
DURATIONS_OR_ZERO = [v for v in DURATIONS if v != "0"]
AMOUNTS = ["-5", "abc", "101%", "9" * 5000, ESCAPES, ""]
CHOICES = ["bogus", ESCAPES, ""]
COMMAND_LINES = ["", "'unclosed quote", "   "]
PROBES = ["../../etc/passwd", "-x; rm -rf /", ESCAPES, "", "http://", "tcp:nowhere"]
PATTERNS = [*NAMES, "all[" + "9" * 5000 + "]", "~(", "!"]
# Input files: missing, a directory, not text, not the format; output files: nowhere to go.
IN_FILES = ["{missing}", "{directory}", "{binary}", "{broken}", "", LONG]
OUT_FILES = ["{missing}", "{directory}", "", LONG]
ARGVS = [["-x; rm -rf /"], [ESCAPES], ["../../etc/passwd"], [LONG]]

# The kind of each argument, by its dest; a few differ per command group.
Values = Sequence[str | list[str]]
KINDS: dict[str, Values] = {
    "services": NAMES,
    "service": NAMES,
    "restart": NAMES,
    "name": NAMES,
    "host": NAMES,
    "run": NAMES,
    "lb": NAMES,
    "backend": NAMES,
    "quorum": ["../../etc/passwd", "-x; rm -rf /", ESCAPES, ""],
    # Malformed calls only: a well-formed unknown action is a call the gate answers (1, "allowed
    # with a warning"), and explaining that answer is what `gate explain` is for.
    "actions": ["-x; rm -rf /", ESCAPES, "", "(restart"],
    "timeout": SECONDS,
    "poll": SECONDS,
    "window": COUNTS,
    "list": COUNTS,
    "concurrency": COUNTS,
    "gate_passes": COUNTS,
    "hosts": COUNTS,
    "controllers": COUNTS_OR_ZERO,
    "lbs": COUNTS_OR_ZERO,
    "api_delay_ms": COUNTS_OR_ZERO,
    "drain_port": [*COUNTS, "70000"],
    "action_timeout": DURATIONS,
    "gate_interval": DURATIONS,
    "deadline": DURATIONS,
    "reboot_timeout": DURATIONS,
    "settle": SECONDS_OR_ZERO,
    "pre_gate_timeout": DURATIONS,
    "stagger": DURATIONS_OR_ZERO,
    "jitter": DURATIONS_OR_ZERO,
    "soak": DURATIONS_OR_ZERO,
    "drain_timeout": DURATIONS_OR_ZERO,
    "canary": AMOUNTS,
    "batch_size": AMOUNTS,
    "failure_budget": AMOUNTS,
    "waves": [*AMOUNTS, "50%,25%"],
    "max_unavailable": ["role", "=1", "role=-5", f"{ESCAPES}=1", ""],
    "command": COMMAND_LINES,
    "check": COMMAND_LINES,
    "reboot_command": COMMAND_LINES,
    "interlock": COMMAND_LINES,
    "gate": PROBES,
    "pre_gate": PROBES,
    "limit": PATTERNS,
    "inventory": IN_FILES,
    "spec": IN_FILES,
    "facts": IN_FILES,
    "recipe": [*IN_FILES, "../../etc/passwd", ESCAPES],
    "journal": ["{directory}", "{binary}", "", LONG],
    "metrics": OUT_FILES,
    "events": OUT_FILES,
    "log": OUT_FILES,
    "socket": ["{missing}", "{directory}", "{binary}", "", LONG],
    "tcp": ["127.0.0.1:0", "nowhere:http", f"{ESCAPES}:1", "", LONG],
    "address": ["127.0.0.1:http", ESCAPES, "", LONG],
    "server": ["api", "../../etc/passwd", f"{ESCAPES}/x", "/"],
    "dir": ["{missing}", "{binary}", "", LONG],
    "subnet": ["10.0.0.0/33", ESCAPES, "", "0.0.0.0/0"],
    # Only loopback ports nothing listens on: a value that slipped through reaches nothing.
    "coordination": [
        "etcd://",
        "http://127.0.0.1:1",
        "etcd://127.0.0.1:99999",
        "etcd://127.0.0.1:1?ttl=-5",
        ESCAPES,
        LONG,
    ],
    "listen": ["127.0.0.1", "127.0.0.1:99999", ESCAPES, "", LONG],
    "group": ["x", "x=0", "x=-1", "x=1:nolabel", ESCAPES, ""],
    "groups": IN_FILES,
    "holder": NAMES,
    "reason": ["", ESCAPES],
    "etcd": COUNTS_OR_ZERO,
    "systemd": COUNTS_OR_ZERO,
}
KINDS_PER_COMMAND: dict[tuple[tuple[str, ...], str], Values] = {
    (("lb", "drain"), "timeout"): SECONDS_OR_ZERO,  # 0: do not wait, --on-timeout decides
    (("lb", "enable"), "timeout"): SECONDS_OR_ZERO,
    (("rollout", "plan"), "window"): ["mon-fri 25:00-26:00", ESCAPES, "", LONG],
    (("rollout", "run"), "window"): ["mon-fri 25:00-26:00", ESCAPES, "", LONG],
    (("fleet", "run"), "command"): ARGVS,  # an argv after --, not a command line
    (("hook", "run"), "command"): ARGVS,
}

SAFE_INVENTORY = "hosts:\n  h1: {address: 127.0.0.1, port: 1}\n"


def base_arguments(path: tuple[str, ...], files: dict[str, str]) -> dict[str, list[str]]:
    """The harmless command line of each command, by dest: each case replaces one of them."""
    inventory = ["-i", files["inventory"]]
    journal = ["--journal", files["journal"]]
    no_socket = ["--socket", files["missing"]]
    lab = ["--dir", files["labdir"], "--name", "zzhcli"]
    group, leaf = path[0], path[-1]
    if group == "fleet":
        return {"inventory": inventory, "command": ["--", "true"] if leaf == "run" else []}
    if group == "lb":
        server = {"server": ["api/web1"]} if leaf in ("drain", "enable") else {}
        return {"socket": no_socket, **server}
    if group in ("rollout", "upgrade") and leaf in ("plan", "run", "facts"):
        recipe = {"recipe": ["openstack"]} if group == "upgrade" else {}
        return {"inventory": inventory, "journal": journal if leaf == "run" else [], **recipe}
    if group in ("rollout", "upgrade"):
        host = {"host": ["h1"]} if leaf == "skip" else {}
        return {"journal": journal, **host}
    unreachable_etcd = ["--coordination", "etcd://127.0.0.1:1"]
    if group == "slots":
        holder = {"group": ["role=compute"], "holder": ["run@h1"]} if leaf == "release" else {}
        return {"coordination": unreachable_etcd, **holder}
    if group == "fleetlock":
        return {"coordination": unreachable_etcd, "listen": ["--listen", "127.0.0.1:0"]}
    if group == "lab":
        return {"dir": lab[:2], "name": lab[2:], "hosts": ["--hosts", "0"] if leaf == "up" else []}
    return {
        "restart": {"services": ["cron"]},
        "clear": {"services": ["cron"]},
        "auto-restarts": {"state": ["off"]},
        "run": {"name": ["config-changed"], "command": ["--", "true"]},
        "explain": {"service": ["cron"], "actions": ["restart"]},
    }.get(leaf, {})


def argument_kind(command: Command, action: argparse.Action) -> Values | None:
    """The hostile values for one argument, or None for flags (they take no value)."""
    if action.nargs == 0:
        return None
    if action.choices is not None:
        return CHOICES
    special = KINDS_PER_COMMAND.get((command.path[-2:], action.dest))
    if special is not None:
        return special
    if action.dest not in KINDS:
        raise AssertionError(
            f"`interlock {command.name}` has an argument {action.dest!r} this sweep does not "
            "know: add it to KINDS with values that are wrong for it"
        )
    return KINDS[action.dest]


def spell(action: argparse.Action, value: str | list[str]) -> list[str]:
    """One argument on a command line; positionals after `--` so '-x…' stays a value."""
    values = value if isinstance(value, list) else [value]
    if action.option_strings:
        return [f"{action.option_strings[-1]}={values[0]}"]
    if action.nargs == argparse.REMAINDER:
        return ["--", *values]
    return values


def cases(command: Command, files: dict[str, str]) -> Iterator[list[str]]:
    base = base_arguments(command.path, files)
    actions = command.arguments()
    positional_dests = [a.dest for a in actions if not a.option_strings]

    def line(root: str, replaced: str | None, value: list[str] | str | None) -> list[str]:
        options: list[str] = []
        positionals: list[str] = []
        for action in actions:
            if action.dest == replaced and value is not None:
                chosen = spell(action, value)
            elif action.dest in base:
                chosen = list(base[action.dest])
            else:
                continue
            if action.option_strings or action.nargs == argparse.REMAINDER:
                options.extend(chosen)
            else:
                positionals.extend(chosen)
        tail = options[:]
        remainder = [a for a in actions if a.nargs == argparse.REMAINDER]
        if remainder and tail and "--" in tail:
            split = tail.index("--")
            tail = tail[:split]
            rest = options[split:]
        else:
            rest = []
        ordered = positionals if replaced not in positional_dests else ["--", *positionals]
        if ordered and ordered[0] == "--" and rest:
            ordered = ordered[1:]  # a remainder after positionals: -- already follows
        return ["--root", root, *command.path, *tail, *ordered, *rest]

    for root in (files["missing"], files["binary"], "", ESCAPES, LONG):
        yield line(root, None, None)
    for action in actions:
        kind = argument_kind(command, action)
        for value in kind or []:
            filled = (
                [v.format(**files) for v in value]
                if isinstance(value, list)
                else value.format(**files)
            )
            yield line(files["root"], action.dest, filled)


def tripwire(what: str) -> Any:
    def tripped(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a hostile argument reached {what}")

    return tripped


class TrippingManager:
    """A service manager that may be made but never asked anything."""

    def __getattr__(self, name: str) -> Any:
        return tripwire(f"this machine's services ({name})")


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from interlock.cli import host as host_cli
    from interlock.demo import host_story, lab_story, operators_story
    from interlock.lab.lab import Lab
    from interlock.rollout import runs

    monkeypatch.setattr(Lab, "_build", tripwire("building a lab"))
    monkeypatch.setattr(Lab, "down", tripwire("lab down"))
    monkeypatch.setattr(host_story, "run_host_demo", tripwire("the host demo"))
    monkeypatch.setattr(lab_story, "run_lab_demo", tripwire("the lab demo"))
    monkeypatch.setattr(operators_story, "run_operators_demo", tripwire("the operators demo"))
    monkeypatch.setattr(host_cli, "detect_manager", TrippingManager)
    monkeypatch.setattr(runs, "execute", tripwire("a rollout's execution"))
    # Relative paths ('../../etc/passwd') land inside the test's directory, as does ~.
    cwd = tmp_path / "cwd" / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("INTERLOCK_COORDINATION", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in ("root", "directory", "labdir", "home", "state"):
        (tmp_path / name).mkdir()
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00\x1b[2J garbage \x00" * 64)
    (tmp_path / "broken.yaml").write_text("hosts: [unclosed\n  - {\n")
    (tmp_path / "inventory.yaml").write_text(SAFE_INVENTORY)
    return {
        "root": str(tmp_path / "root"),
        "missing": str(tmp_path / "missing" / "nothing.yaml"),
        "directory": str(tmp_path / "directory"),
        "binary": str(tmp_path / "binary"),
        "broken": str(tmp_path / "broken.yaml"),
        "inventory": str(tmp_path / "inventory.yaml"),
        "journal": str(tmp_path / "state" / "journal.sqlite"),
        "labdir": str(tmp_path / "labdir"),
    }


def test_every_argument_kind_is_known() -> None:
    for command in commands():
        for action in command.arguments():
            argument_kind(command, action)


@pytest.mark.parametrize("command", commands(), ids=lambda c: c.name)
def test_hostile_arguments(
    command: Command, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    failures = []
    for argv in cases(command, files):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code) if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        lines = err.splitlines()
        shown = " ".join(repr(a)[:60] for a in argv)
        if code == 0:
            failures.append(f"exit 0: {shown}")
        elif len(lines) != 1 or not lines[0].startswith("interlock"):
            failures.append(f"stderr is not one line: {shown}\n{err[:600]}")
        elif "\x1b" in out + err:
            failures.append(f"an escape sequence reached the terminal: {shown}")
    assert not failures, "\n".join(failures)
    assert os.listdir(files["labdir"]) == []
