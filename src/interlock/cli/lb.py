"""`interlock lb servers|drain|enable`: haproxy backends through the runtime API (admin socket)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from interlock.cli.arguments import positive_seconds, seconds_or_zero
from interlock.errors import UsageError

if TYPE_CHECKING:
    from interlock.lb.drain import DrainReport, EnableReport
    from interlock.lb.endpoints import Endpoints
    from interlock.lb.servers import Target

DEFAULT_SOCKET = "/run/haproxy/admin.sock"
T = TypeVar("T")

ENDPOINT_HELP = f"""\
Which haproxy: --socket PATH (default {DEFAULT_SOCKET}), --tcp HOST:PORT (a `stats socket
ipv4@ADDR:PORT level admin`), or -i INVENTORY for the inventory's `loadbalancers` (all of them,
or those named with --lb; a socket on an inventory host is reached over SSH, with nothing
installed on that host).
"""

SERVERS_EPILOG = f"""\
examples:
  interlock lb servers
  interlock lb servers --tcp 10.200.0.6:9999 --backend api
  interlock lb servers -i /var/tmp/interlock-lab/inventory.yaml --json

Shows, for every server: its LB, backend, address, status (UP, DOWN, DRAIN, MAINT, or
"UP 1/2" while checks change it), admin state (ready, drain, maint), current sessions and queue.

{ENDPOINT_HELP}"""

DRAIN_EPILOG = f"""\
examples:
  interlock lb drain api/ctl1 --timeout 60
  interlock lb drain api/ctl1 --timeout 30 --on-timeout force -i inventory.yaml
  interlock lb drain --address 10.200.0.11:8080 --timeout 30 -i inventory.yaml

Sets the server to drain on every LB that has it (no new requests; health checks go on), then
waits until its current sessions are 0 on all of them. When --timeout passes first:
  fail      stop with an error; the server stays drained (the default)
  force     cut the remaining sessions (`shutdown sessions server`) and confirm 0
  continue  report the sessions left and exit 0
--timeout 0 checks once and never waits. --address drains every backend/server, on every LB,
that points at that host (and port): no hand-written mapping needed.

{ENDPOINT_HELP}"""

ENABLE_EPILOG = f"""\
examples:
  interlock lb enable api/ctl1
  interlock lb enable --address 10.200.0.11 --timeout 60 -i inventory.yaml

Sets the server ready on every LB that has it, then waits until its health checks report UP
on all of them (fails after --timeout; the server then takes traffic as soon as it passes).

{ENDPOINT_HELP}"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "lb",
        help="haproxy servers: list, drain, enable",
        description="Look at and change haproxy backend servers through the runtime API.",
    )
    sub = group.add_subparsers(dest="lb_command", metavar="ACTION", required=True)

    servers = sub.add_parser(
        "servers",
        help="list servers with state, sessions and queue",
        description="List the servers of one or more haproxies.",
        epilog=SERVERS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_endpoint_options(servers)
    servers.add_argument("--backend", metavar="B", help="only this backend")
    servers.add_argument("--json", action="store_true", help="print JSON")
    servers.set_defaults(handler=servers_command)

    drain = sub.add_parser(
        "drain",
        help="drain a server on every LB and wait for its sessions to end",
        description="Drain a server on every haproxy that has it and wait for 0 sessions.",
        epilog=DRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_options(drain)
    drain.add_argument(
        "--timeout",
        type=seconds_or_zero,
        default=60.0,
        metavar="S",
        help="bound (default 60; 0: do not wait, --on-timeout decides at once)",
    )
    drain.add_argument(
        "--on-timeout",
        choices=("fail", "force", "continue"),
        default="fail",
        help="what to do when sessions remain after --timeout (default fail)",
    )
    drain.add_argument(
        "--poll",
        type=positive_seconds,
        default=0.2,
        metavar="S",
        help="poll interval (default 0.2)",
    )
    drain.set_defaults(handler=drain_command)

    enable = sub.add_parser(
        "enable",
        help="put a server back in rotation and wait until it is UP",
        description="Set a server ready on every haproxy that has it and wait for UP.",
        epilog=ENABLE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_options(enable)
    enable.add_argument(
        "--timeout",
        type=seconds_or_zero,
        default=60.0,
        metavar="S",
        help="bound (default 60; 0: do not wait for UP)",
    )
    enable.add_argument(
        "--poll",
        type=positive_seconds,
        default=0.5,
        metavar="S",
        help="poll interval (default 0.5)",
    )
    enable.set_defaults(handler=enable_command)


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH", help=f"local admin socket ({DEFAULT_SOCKET})")
    where.add_argument("--tcp", metavar="HOST:PORT", help="admin socket on a TCP address")
    where.add_argument("-i", "--inventory", metavar="INVENTORY", help="the inventory's LBs")
    parser.add_argument(
        "--lb", action="append", default=[], metavar="NAME", help="with -i: only this LB (repeat)"
    )


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", nargs="?", metavar="BACKEND/SERVER", help="e.g. api/ctl1")
    parser.add_argument(
        "--address",
        metavar="ADDR[:PORT]",
        help="instead of BACKEND/SERVER: every server pointing at this host (and port)",
    )
    add_endpoint_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def endpoints(args: argparse.Namespace) -> Endpoints:
    from interlock.lb import endpoints as chosen

    if args.lb and not args.inventory:
        raise UsageError("--lb selects load balancers of an inventory: give -i INVENTORY")
    if args.inventory:
        from interlock.fleet.inventory_file import load_inventory

        return chosen.from_inventory(load_inventory(args.inventory), args.lb)
    if args.tcp:
        return chosen.from_tcp(args.tcp)
    return chosen.from_socket(args.socket or DEFAULT_SOCKET)


def run_with(args: argparse.Namespace, work: Callable[[Endpoints], Awaitable[T]]) -> T:
    async def main() -> T:
        async with endpoints(args) as chosen:
            return await work(chosen)

    return asyncio.run(main())


def servers_command(args: argparse.Namespace) -> int:
    from interlock.cli.output import emit_json, table, warn
    from interlock.lb.servers import list_servers

    listed = run_with(args, lambda chosen: list_servers(chosen.clients, args.backend))
    if args.json:
        emit_json([asdict(lb) for lb in listed])
    else:
        rows = [
            (
                view.lb,
                view.backend,
                view.server,
                join_address(view.address, view.port),
                view.status,
                view.admin,
                view.sessions,
                view.queue,
            )
            for lb in listed
            for view in lb.servers
        ]
        columns = ("lb", "backend", "server", "address", "status", "admin", "sessions", "queue")
        table(None, columns, rows)
    failed = [lb for lb in listed if lb.error is not None]
    for lb in failed:
        warn(lb.error or "")
    return 1 if failed else 0


def drain_command(args: argparse.Namespace) -> int:
    from interlock.cli.output import emit_json, table, warn
    from interlock.lb.drain import DrainTimeout, OnTimeout, drain_targets

    async def work(chosen: Endpoints) -> DrainReport:
        targets = await find_targets(args, chosen)
        return await drain_targets(
            targets, timeout=args.timeout, on_timeout=OnTimeout(args.on_timeout), poll=args.poll
        )

    try:
        report = run_with(args, work)
    except DrainTimeout as exc:
        if args.json:
            emit_json(drain_json(exc.report))
        raise
    if args.json:
        emit_json(drain_json(report))
    else:
        rows = [
            (
                r.lb,
                f"{r.backend}/{r.server}",
                f"{r.before.status} ({r.before.sessions})",
                f"{r.after.status} ({r.after.sessions})",
                r.peak_sessions,
                f"{r.seconds:.2f}",
                "yes" if r.forced else "",
            )
            for r in report.results
        ]
        columns = ("lb", "server", "before (sessions)", "after (sessions)", "peak", "s", "cut")
        table(None, columns, rows)
    if report.warning:
        warn(report.warning + " (--on-timeout continue)")
    return 0


def enable_command(args: argparse.Namespace) -> int:
    from interlock.cli.output import emit_json, table
    from interlock.lb.drain import EnableTimeout, enable_targets

    async def work(chosen: Endpoints) -> EnableReport:
        targets = await find_targets(args, chosen)
        return await enable_targets(targets, timeout=args.timeout, poll=args.poll)

    try:
        report = run_with(args, work)
    except EnableTimeout as exc:
        if args.json:
            emit_json(asdict(exc.report))
        raise
    if args.json:
        emit_json(asdict(report))
    else:
        rows = [
            (r.lb, f"{r.backend}/{r.server}", r.before.status, r.after.status, f"{r.seconds:.2f}")
            for r in report.results
        ]
        table(None, ("lb", "server", "before", "after", "s"), rows)
    return 0


async def find_targets(args: argparse.Namespace, chosen: Endpoints) -> list[Target]:
    from interlock.lb.servers import find_by_address, find_server

    if (args.server is None) == (args.address is None):
        raise UsageError("give either BACKEND/SERVER or --address ADDR[:PORT]")
    if args.address is not None:
        address, port = split_address(args.address)
        return await find_by_address(chosen.clients, address, port)
    backend, sep, server = args.server.partition("/")
    if not sep or not backend or not server:
        raise UsageError(f"expected BACKEND/SERVER, got {args.server!r}")
    return await find_server(chosen.clients, backend, server)


def split_address(text: str) -> tuple[str, int | None]:
    """`10.0.0.5`, `10.0.0.5:8080`, `::1` or `[::1]:8080` → (address, port or None)."""
    if text.startswith("["):
        address, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"expected [IPV6]:PORT, got {text!r}")
        return address, parse_port(rest[1:], text) if rest else None
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return address, parse_port(port, text)
    return text, None


def parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in {whole!r}")
    return int(text)


def join_address(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def drain_json(report: DrainReport) -> dict[str, Any]:
    data: dict[str, Any] = asdict(report)
    data["complete"] = report.complete
    data["warning"] = report.warning
    return data
