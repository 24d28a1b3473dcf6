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


def main(argv: Sequence[str] | None = None, groups: Sequence[str] = GROUP_MODULES) -> int:
    parser = build_parser(groups)
    args = parser.parse_args(argv)
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
