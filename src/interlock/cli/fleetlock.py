"""`interlock fleetlock serve`: the FleetLock protocol for reboot managers, on etcd slots."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from interlock.cli.slots import coordination_option
from interlock.errors import UsageError


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected ADDRESS:PORT (e.g. 127.0.0.1:3333)")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the operator's choice


def cmd_serve(args: argparse.Namespace) -> int:
    from interlock.coordination.etcd import EtcdClient, parse_url
    from interlock.coordination.etcd_slots import SlotStore
    from interlock.coordination.fleetlock import FleetLock, FleetLockServer, parse_group

    if not args.coordination or args.coordination == "local":
        raise UsageError("fleetlock serve needs --coordination etcd://HOST:PORT,…")
    url = parse_url(args.coordination)
    if not args.group:
        raise UsageError("give at least one --group NAME=LIMIT (e.g. --group default=1)")
    rules = {}
    for text in args.group:
        rule = parse_group(text)
        if rule.name in rules:
            raise UsageError(f"--group {rule.name} is given twice")
        rules[rule.name] = rule
    address, port = parse_listen(args.listen)

    async def serve() -> None:
        store = SlotStore(EtcdClient(url))
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
    p.set_defaults(handler=cmd_serve)
