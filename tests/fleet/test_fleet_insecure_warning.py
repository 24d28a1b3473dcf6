"""`--insecure-no-host-key-check` is said out loud on every run, by every command that has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_commands import commands
from interlock.cli.main import main

WARNING = "SSH host keys are NOT checked"


COMMANDS = [
    list(command.path)
    for command in commands()
    if any("--insecure-no-host-key-check" in a.option_strings for a in command.arguments())
]


def test_the_flag_is_found() -> None:
    assert ["fleet", "status"] in COMMANDS and ["fleet", "run"] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_run_warns(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 on loopback refuses at once: the command fails fast after the warning.
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  h1: {address: 127.0.0.1, port: 1}\n")
    tail = ["--", "true"] if command[-1] == "run" else []
    argv = [*command, "-i", str(inventory), "--timeout", "2"]
    main([*argv, "--insecure-no-host-key-check", *tail])
    assert WARNING in capsys.readouterr().err
    main([*argv, *tail])
    assert WARNING not in capsys.readouterr().err
