"""`interlock demo`: the README's stories, run for real on this machine."""

from __future__ import annotations

import argparse
import os

from interlock.cli.arguments import positive_count
from interlock.errors import InterlockError


def _require_root() -> None:
    if os.geteuid() != 0:
        raise InterlockError("the demo needs root (it uses network, mount and PID namespaces)")


def cmd_host(args: argparse.Namespace) -> int:
    _require_root()
    from interlock.demo.host_story import run_host_demo

    return run_host_demo()


def cmd_lab(args: argparse.Namespace) -> int:
    _require_root()
    from interlock.demo.lab_story import run_lab_demo

    return run_lab_demo(hosts=args.hosts, systemd=args.systemd)


def cmd_operators(args: argparse.Namespace) -> int:
    _require_root()
    from interlock.demo.operators_story import run_operators_demo

    return run_operators_demo()


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
    p = sub.add_parser(
        "lab",
        help="the main job on a lab of real hosts: deferred restarts paid back under load with "
        "0 failed requests (about a minute)",
    )
    p.add_argument(
        "--hosts", type=positive_count, default=8, help="lab size (3 controllers, 1 lb, computes)"
    )
    p.add_argument(
        "--systemd",
        action="store_true",
        help="every host boots systemd from its own Debian root file system (APIs as units)",
    )
    p.set_defaults(handler=cmd_lab)
    p = sub.add_parser(
        "operators",
        help="two operators roll out over overlapping hosts at once and share one budget "
        "through etcd: never more than one compute down (about half a minute)",
    )
    p.set_defaults(handler=cmd_operators)
