"""`interlock upgrade ...` as a program, for tests that run (and kill) an upgrade in a process."""

from __future__ import annotations

import argparse
import sys

from interlock.cli import upgrade
from interlock.errors import InterlockError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="interlock")
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade.register(commands)
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except InterlockError as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return exc.exit_code
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
