"""Printing results for people (rich tables, lines) and for programs (--json).

Everything shown to a person goes through here, and every value in it is data: rich never
reads markup from it (a reason like `File(s) changed: [/etc/nova/nova.conf]` is printed as
written) and control characters are shown as escapes (`observe.plain_text`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from interlock.observe.plain_text import printable, printable_lines

if TYPE_CHECKING:
    from rich.text import Text

# A table cell longer than this is cut (and says so): one host's huge value must not bury
# the fleet's view.
CELL_LIMIT = 500


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def cell(value: object) -> Text:
    """A table cell as plain text: no markup, no control characters, bounded."""
    from rich.text import Text

    return Text(printable(value, CELL_LIMIT))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(
        title=None if title is None else cell(title),
        show_edge=False,
        header_style="bold",
        pad_edge=False,
    )
    for column in columns:
        view.add_column(cell(column))
    for row in rows:
        view.add_row(*(cell(value) for value in row))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)  # piped output: do not cut columns at 80
    console.print(view)


def echo(text: object = "") -> None:
    """Print lines for people on stdout, every line made printable."""
    print(printable_lines(str(text)))


def warn(message: object) -> None:
    """One line on stderr: a warning, or an error's whole message."""
    print(f"interlock: {printable(message)}", file=sys.stderr)
