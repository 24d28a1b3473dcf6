"""`interlock fleet`: every host's deferred work in one view; interlock installed on every host."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from interlock.cli.arguments import positive_count, positive_seconds
from interlock.cli.output import echo, emit_json, table, warn
from interlock.errors import UsageError
from interlock.fleet.inventory import DEFAULT_INVENTORY

if TYPE_CHECKING:
    from interlock.fleet.install import InstallResult
    from interlock.fleet.inventory import Host, Inventory
    from interlock.fleet.status import FleetStatus
    from interlock.fleet.transport import HostOutcome, SshTransport


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _targets(args: argparse.Namespace) -> tuple[Inventory, list[Host]]:
    # Imported when used: the inventory reader loads PyYAML, which `fleet --help` does not need.
    from interlock.fleet.inventory_file import load_inventory

    inventory = load_inventory(args.inventory)
    hosts = inventory.select(args.limit)
    if not hosts:
        raise UsageError("no hosts selected")
    return inventory, hosts


def _transport(args: argparse.Namespace, inventory: Inventory) -> SshTransport:
    from interlock.fleet.transport import SshTransport

    return SshTransport.for_inventory(
        inventory, check_host_keys=not args.insecure_no_host_key_check
    )


def cmd_status(args: argparse.Namespace) -> int:
    from interlock.fleet.status import gather_status_sync

    inventory, hosts = _targets(args)
    status = gather_status_sync(hosts, _transport(args, inventory), args.window, args.timeout)
    if args.json:
        emit_json(status.as_dict())
    else:
        show_status(status)
    return 0 if status.complete else 1


def show_status(status: FleetStatus) -> None:
    """The fleet's deferred work as a table, totals, and a warning per host or file not read."""
    now = int(time.time())
    rows = []
    for debt in status.hosts:
        for event in debt.events:
            rows.append(
                (
                    debt.host.name,
                    event.service,
                    event.action,
                    _age(max(0, now - event.timestamp)),
                    debt.state(event),
                    event.reason,
                )
            )
        for hook in debt.hooks:
            rows.append((debt.host.name, f"hook {hook}", "run", "", "pending", "auto restarts off"))
        if debt.reboot is not None and debt.reboot.needed:
            reasons = ", ".join(debt.reboot.reasons) or "/run/reboot-required"
            rows.append((debt.host.name, "(the host)", "reboot", "", "needed", reasons))
    if rows:
        table(None, ["host", "service", "action", "since", "state", "reason"], rows)
    per_service = status.per_service()
    if per_service:
        echo(
            "pending per service: " + ", ".join(f"{s} {n}" for s, n in sorted(per_service.items()))
        )
        per_group = status.per_group()
        echo("hosts per group: " + ", ".join(f"{g} {n}" for g, n in sorted(per_group.items())))
    owing = sum(1 for d in status.hosts if d.pending or d.hooks)
    reboots = sum(1 for d in status.hosts if d.reboot is not None and d.reboot.needed)
    echo(
        f"{len(status.hosts)} hosts read in {status.duration:.2f}s: {owing} with deferred work"
        + (f", {reboots} needing a reboot" if reboots else "")
        + (f", {len(status.unreachable)} unreachable" if status.unreachable else "")
    )
    for host, reason in status.unreachable:
        warn(f"{host.name}: unreachable: {reason}")
    for problem in status.problems:
        warn(problem)


def cmd_install(args: argparse.Namespace) -> int:
    from interlock.fleet.install import build_zipapp, install_on_host
    from interlock.fleet.transport import fan_out

    inventory, hosts = _targets(args)
    with tempfile.TemporaryDirectory() as tmp:
        archive_path = Path(tmp) / "interlock.pyz"
        digest = build_zipapp(archive_path)
        archive = archive_path.read_bytes()
    transport = _transport(args, inventory)

    async def run() -> list[HostOutcome[InstallResult]]:
        try:
            return await fan_out(
                hosts,
                lambda host: install_on_host(
                    transport, host, archive, digest, not args.no_chain, args.on_policy_error
                ),
                window=args.window,
            )
        finally:
            await transport.close()

    outcomes = asyncio.run(run())
    failed = 0
    for outcome in outcomes:
        if outcome.ok and outcome.value is not None:
            what = "installed" if outcome.value.copied else "already current"
            echo(f"ok   {outcome.host.name}: interlock {what}, gate active")
        else:
            failed += 1
            warn(f"FAIL {outcome.host.name}: {outcome.reason}")
    echo(f"{len(outcomes) - failed} of {len(outcomes)} hosts ready")
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    from interlock.fleet.transport import CommandResult, fan_out

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("give the command after --, e.g. fleet run -- interlock status")
    inventory, hosts = _targets(args)
    transport = _transport(args, inventory)

    async def run() -> list[HostOutcome[CommandResult]]:
        try:
            return await fan_out(
                hosts,
                lambda host: transport.run(host, command, timeout=args.timeout),
                window=args.window,
            )
        finally:
            await transport.close()

    outcomes = asyncio.run(run())
    failed = 0
    results: list[dict[str, object]] = []
    for outcome in outcomes:
        result = outcome.value
        if result is None:
            failed += 1
            results.append({"host": outcome.host.name, "error": outcome.reason})
            if not args.json:
                warn(f"{outcome.host.name}: unreachable: {outcome.reason}")
            continue
        if not result.ok:
            failed += 1
        out = result.stdout.decode(errors="replace").rstrip("\n")
        err = result.stderr.decode(errors="replace").rstrip("\n")
        results.append(
            {
                "host": outcome.host.name,
                "exit_status": result.exit_status,
                "stdout": out,
                "stderr": err,
            }
        )
        if not args.json:
            mark = "" if result.ok else f" (exit {result.exit_status})"
            lines = [line for line in (out + "\n" + err).splitlines() if line.strip()]
            if len(lines) == 1:
                echo(f"{outcome.host.name}{mark}: {lines[0]}")
            else:
                echo(f"{outcome.host.name}{mark}:")
                for line in lines:
                    echo(f"  {line}")
    if args.json:
        emit_json(results)
    return 1 if failed else 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--inventory", default=DEFAULT_INVENTORY, help="interlock YAML or Ansible inventory"
    )
    parser.add_argument("--limit", help="host pattern: name, group, glob, a:b, a:&b, a:!b")
    parser.add_argument("--window", type=positive_count, default=24, help="hosts in flight at once")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds per host")
    parser.add_argument(
        "--insecure-no-host-key-check",
        action="store_true",
        help="accept any SSH host key (never on a production network)",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser("fleet", help="every host at once: status, install, run")
    sub = group.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "status",
        help="every host's deferred restarts and hooks, in one view",
        formatter_class=fmt,
        description="Read every host's ledger (/var/lib/policy-rc.d) and deferred hooks over SSH "
        "and the start times of the services they name. Hosts need only sh: hosts a charm "
        "manages are read the same way. Unreachable hosts and unreadable files are listed, "
        "and then the exit status is 1.",
        epilog="examples:\n  interlock fleet status -i inventory.yaml\n"
        "  interlock fleet status -i hosts.ini --limit 'compute:&az1' --json",
    )
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser(
        "install",
        help="put interlock on every host and install its gate (idempotent)",
        description="Copy a self-contained interlock zipapp to /usr/sbin/interlock on each host "
        "(skipped when identical) and run `interlock gate install` there.",
    )
    _common(p)
    p.add_argument("--no-chain", action="store_true", help="do not consult the previous gate")
    p.add_argument("--on-policy-error", choices=("deny", "allow", "uncertain"), default="deny")
    p.set_defaults(handler=cmd_install)

    p = sub.add_parser(
        "run",
        help="run one command on every selected host (argv, no shell)",
        formatter_class=fmt,
        description="Run a command on every selected host through the sliding window and print "
        "each host's output. The command is an argv list, quoted for the remote shell; exit "
        "status 1 if any host failed or was unreachable.",
        epilog="examples:\n  interlock fleet run -i inv.yaml -- interlock auto-restarts off\n"
        "  interlock fleet run -i inv.yaml --limit computes -- invoke-rc.d cron restart",
    )
    _common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(handler=cmd_run)
