"""Printing results for people (rich tables) and for programs (--json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)  # piped output: do not cut columns at 80
    console.print(view)


def warn(message: str) -> None:
    print(f"interlock: {message}", file=sys.stderr)
