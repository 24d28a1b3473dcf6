"""Shows a demo as numbered steps and the commands they run, with their output as it comes.

Two ways in: `Narrator` for demos driven from Python (each command a subprocess), and
`narrate` for a shell script whose `@@ title` lines open steps and `@$ command` lines show and
run commands (for demos that must run inside one namespace).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence

from rich.console import Console

STEP = "@@ "
COMMAND = "@$ "


class Narrator:
    def __init__(self, console: Console | None = None) -> None:
        if console is None:
            console = Console(highlight=False)
            if not console.is_terminal:
                console = Console(highlight=False, width=160)  # piped: keep lines whole
        self.console = console
        self.steps = 0
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        self.steps += 1
        self.console.print(f"\n[bold cyan]{self.steps}. {title}[/]")

    def command(self, shown: str) -> None:
        self.console.print(f"[bold]$ {shown}[/]")

    def output(self, line: str) -> None:
        self.console.print(f"  {line}", markup=False)

    def note(self, text: str) -> None:
        self.console.print(f"[green]{text}[/]")

    def exit_status(self, code: int) -> None:
        self.console.print(f"[dim](exit status {code})[/]")

    def run(
        self,
        argv: Sequence[str],
        shown: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> int:
        """Run a command, streaming its output; raise if `check` and it fails."""
        self.command(shown or shlex.join(argv))
        with subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        ) as process:
            assert process.stdout is not None
            for raw in process.stdout:
                self.output(raw.rstrip("\n"))
            code = process.wait()
        if code:
            self.exit_status(code)
            if check:
                raise RuntimeError(f"demo command failed ({code}): {shown or shlex.join(argv)}")
        return code

    def finish(self) -> None:
        self.console.print(f"\n[dim]demo finished in {time.monotonic() - self.started:.1f}s[/]")


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


def narrate(argv: Sequence[str], narrator: Narrator | None = None) -> int:
    """Run `argv` (which runs an expanded script) and show its output as steps."""
    narrator = narrator or Narrator()
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
                narrator.step(line[len("__STEP__ ") :])
            elif line.startswith("__CMD__ "):
                narrator.command(line[len("__CMD__ ") :])
            elif line.startswith("__EXIT__ "):
                narrator.exit_status(int(line[len("__EXIT__ ") :]))
            else:
                narrator.output(line)
        code = process.wait()
    narrator.finish()
    return code
