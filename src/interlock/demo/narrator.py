"""Runs a demo script and shows it as steps a person can follow.

A demo script is shell: a line `@@ title` opens a step, `@$ command` shows and runs a command.
The narrator turns that into echo lines, streams the output, and styles it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence

from rich.console import Console

STEP = "@@ "
COMMAND = "@$ "


def expand(script: str) -> str:
    """Turn `@@`/`@$` lines into shell that prints markers and runs the command."""
    out = []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith(STEP):
            out.append(f"echo {shlex.quote('__STEP__ ' + stripped[len(STEP) :])}")
        elif stripped.startswith(COMMAND):
            command = stripped[len(COMMAND) :]
            out.append(f"echo {shlex.quote('__CMD__ ' + command)}")
            out.append(f"{command} 2>&1 || echo __EXIT__ $?")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def narrate(argv: Sequence[str], console: Console | None = None) -> int:
    """Run `argv` (which runs an expanded script) and print its output as steps."""
    console = console or Console(highlight=False)
    started = time.monotonic()
    step = 0
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            if line.startswith("__STEP__ "):
                step += 1
                console.print(f"\n[bold cyan]{step}. {line[len('__STEP__ ') :]}[/]")
            elif line.startswith("__CMD__ "):
                console.print(f"[bold]$ {line[len('__CMD__ ') :]}[/]")
            elif line.startswith("__EXIT__ "):
                console.print(f"[dim](exit status {line[len('__EXIT__ ') :]})[/]")
            else:
                console.print(f"  {line}", markup=False)
        code = process.wait()
    console.print(f"\n[dim]demo finished in {time.monotonic() - started:.1f}s[/]")
    return code
