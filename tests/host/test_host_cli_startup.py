"""The `interlock` command loads only the command group it runs."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

from interlock.cli import host
from interlock.cli.main import GROUP_MODULES, build_parser, groups_for

LOADED = """
import sys
from interlock.cli.main import main
code = main(sys.argv[1:])
print(sorted({m.split(".")[1] for m in sys.modules if m.startswith("interlock.")}), code)
"""


def test_a_ledger_command_loads_no_fleet_rollout_or_lab_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, "--root", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "No restarts or hooks deferred"
    loaded = set(ast.literal_eval(lines[1].rsplit(" ", 1)[0]))
    assert {"cli", "host"} <= loaded
    assert not loaded & {"fleet", "rollout", "upgrade", "lb", "lab", "demo", "facts", "detect"}


def test_each_command_finds_its_group() -> None:
    assert groups_for(["--root", "/x", "status"], GROUP_MODULES) == ("host",)
    assert groups_for(["--root=/x", "run-deferred-hooks"], GROUP_MODULES) == ("host",)
    assert groups_for(["rollout", "plan"], GROUP_MODULES) == ("rollout",)
    # Help and mistakes see every command.
    for argv in ([], ["-h"], ["--root", "/x"], ["stauts"], ["host"]):
        assert groups_for(argv, GROUP_MODULES) == GROUP_MODULES, argv
    # What host.COMMANDS says is what the host group registers.
    parser = build_parser(("host",))
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert tuple(commands.choices) == host.COMMANDS
