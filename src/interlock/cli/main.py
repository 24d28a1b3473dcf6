"""The `interlock` command: a thin layer that hands each command group to its module.

Every failure a person can cause or meet ends the same way: exit status ≠ 0 and one line on
stderr that says what was wrong, never a traceback. Usage mistakes exit 2 (as argparse does),
everything else 1 or the error's own code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from interlock.cli.output import warn
from interlock.errors import InterlockError, UsageError

# Each module registers its sub-commands; handlers import heavy libraries lazily.
GROUP_MODULES: tuple[str, ...] = (
    "host",
    "gate",
    "detect",
    "fleet",
    "lb",
    "rollout",
    "upgrade",
    "lab",
    "demo",
    "slots",
    "fleetlock",
)


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (the usage is one `--help` away), like every error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("interlock").strip()
        warn(f"{command + ': ' if command else ''}{message} (see --help)")
        raise SystemExit(UsageError.exit_code)


def build_parser(groups: Sequence[str] = GROUP_MODULES) -> argparse.ArgumentParser:
    parser = Parser(
        prog="interlock",
        description="Control service-interrupting events (restarts, drains, upgrades) on "
        "Debian/Ubuntu hosts and fleets.",
    )
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="operate on the host tree under DIR (a chroot or image) instead of /",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in groups:
        module = importlib.import_module(f"interlock.cli.{name}")
        module.register(commands)
    return parser


def check_root(root: str) -> None:
    """A --root that is not a directory would read as an empty host: "nothing deferred"."""
    if not os.path.isdir(root):
        problem = "no such directory" if not os.path.lexists(root) else "not a directory"
        raise UsageError(f"--root {root!r}: {problem}")


def describe_os_error(exc: OSError) -> str:
    """A failed file or process operation as the operator needs it: what, where, and a hint."""
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or str(exc)
    message = f"{where}: {what}" if where is not None else what
    if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        message += " (run it as root)"
    return message


def refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty value is never meant: `-i ''` would quietly fall back to the default inventory,
    `--metrics ''` quietly write nothing."""
    for name, value in sorted(vars(args).items()):
        if isinstance(value, str) and not value.strip():
            parser.error(f"argument {name.replace('_', '-')}: an empty value")


def groups_for(argv: Sequence[str], groups: Sequence[str]) -> Sequence[str]:
    """Only the group that owns the command, so `interlock status` on a host or in a check loop
    does not import the fleet, rollout and lab code; every group for help and mistakes.

    Each group but `host` is one command named after it; `host` holds the ledger commands."""
    words = list(argv)
    while words and words[0].startswith("--root"):
        words = words[1:] if "=" in words[0] else words[2:]
    if not words or words[0].startswith("-"):
        return groups
    if words[0] in groups and words[0] != "host":
        return (words[0],)
    if "host" in groups:
        from interlock.cli import host

        if words[0] in host.COMMANDS:
            return ("host",)
    return groups


def main(argv: Sequence[str] | None = None, groups: Sequence[str] = GROUP_MODULES) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(groups_for(words, groups))
    args = parser.parse_args(words)
    refuse_empty(parser, args)
    try:
        check_root(args.root)
        result: int = args.handler(args)
    except InterlockError as exc:
        warn(exc)
        return exc.exit_code
    except OSError as exc:
        # Expected on a real host: a directory only root may write, a full disk, a path that
        # does not exist. Not a bug, so no traceback.
        warn(describe_os_error(exc))
        return 1
    except KeyboardInterrupt:
        warn("interrupted")
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
