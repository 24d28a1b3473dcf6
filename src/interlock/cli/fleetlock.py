"""`interlock fleetlock serve`: the FleetLock protocol for reboot managers, on etcd slots."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from interlock.cli.slots import coordination_option
from interlock.errors import UsageError


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected ADDRESS:PORT (e.g. 127.0.0.1:3333)")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the operator's choice


def read_groups(path: str) -> list[tuple[str, str]]:
    """A groups file: one NAME=LIMIT[:LABEL=VALUE] a line; blank lines and # comments skipped."""
    from interlock.documents import read_text

    found = []
    for number, line in enumerate(read_text(Path(path)).splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            found.append((f"{path} line {number}", text))
    return found


def cmd_serve(args: argparse.Namespace) -> int:
    from interlock.coordination.backend import CoordinationError
    from interlock.coordination.etcd import EtcdClient, EtcdError, EtcdUnavailable, parse_url
    from interlock.coordination.etcd_slots import SlotStore
    from interlock.coordination.fleetlock import FleetLock, FleetLockServer, parse_group

    if not args.coordination or args.coordination == "local":
        raise UsageError("fleetlock serve needs --coordination etcd://HOST:PORT,…")
    url = parse_url(args.coordination)
    given = [(f"--group {text}", text) for text in args.group or []]
    if args.groups:
        given += read_groups(args.groups)
    if not given:
        raise UsageError("give at least one --group NAME=LIMIT (e.g. --group default=1)")
    rules = {}
    for where, text in given:
        try:
            rule = parse_group(text)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if rule.name in rules:
            raise UsageError(f"{where}: group {rule.name} is given twice")
        rules[rule.name] = rule
    address, port = parse_listen(args.listen)

    async def serve() -> None:
        store = SlotStore(EtcdClient(url))
        try:
            await store.holdings()  # etcd answers, or say so now rather than on every request
        except (EtcdUnavailable, EtcdError) as exc:
            await store.client.close()
            raise CoordinationError(f"coordination {url}: {exc}") from None
        server = await FleetLockServer(FleetLock(store, rules)).serve(address, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        groups = ", ".join(f"{r.name}={r.limit} (as {r.key})" for r in rules.values())
        print(f"fleetlock: listening on {args.listen}; groups {groups}; {url}", file=sys.stderr)
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            await store.client.close()

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser(
        "fleetlock",
        help="serve the FleetLock protocol (Zincati, …) on the slots rollouts use",
        formatter_class=fmt,
        description="Hosts that reboot themselves ask before (POST /v1/pre-reboot) and report "
        "after (POST /v1/steady-state); their slots count in the same per-group budget as "
        "interlock rollouts and upgrades.",
    )
    sub = group.add_subparsers(dest="fleetlock_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "serve",
        help="listen for FleetLock requests",
        formatter_class=fmt,
        epilog="example:\n  interlock fleetlock serve --coordination etcd://10.0.0.1:2379 "
        "--listen 0.0.0.0:3333 \\\n      --group default=1 --group workers=2:role=compute",
    )
    coordination_option(p)
    p.add_argument("--listen", required=True, metavar="ADDRESS:PORT")
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=LIMIT[:LABEL=VALUE]",
        help="a FleetLock group and its limit; with LABEL=VALUE its slots count in that "
        "interlock group (shared with rollouts limiting it); repeatable",
    )
    p.add_argument(
        "--groups",
        metavar="FILE",
        help="more groups, one NAME=LIMIT[:LABEL=VALUE] a line (# comments)",
    )
    p.set_defaults(handler=cmd_serve)
