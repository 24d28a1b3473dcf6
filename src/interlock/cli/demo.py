"""`interlock demo`: the README's stories, run for real on this machine."""

from __future__ import annotations

import argparse
import os

from interlock.errors import InterlockError


def cmd_host(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise InterlockError("the demo needs root (it uses mount and PID namespaces)")
    from interlock.demo.host_story import run_host_demo

    return run_host_demo()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "demo",
        help="run a demo on this machine (needs root; changes nothing outside a sandbox)",
    )
    sub = group.add_subparsers(dest="demo_command", required=True, metavar="DEMO")
    p = sub.add_parser(
        "host",
        help="a package update denied a restart, recorded, shown and applied (about 10 s)",
    )
    p.set_defaults(handler=cmd_host)
