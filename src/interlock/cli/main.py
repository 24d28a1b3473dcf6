"""The `interlock` command: a thin layer that hands each command group to its module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from interlock.errors import InterlockError

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
)


def build_parser(groups: Sequence[str] = GROUP_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    try:
        result: int = args.handler(args)
    except InterlockError as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interlock: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
