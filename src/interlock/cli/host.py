"""Host commands: status, show, check, restart, clear, auto-restarts, hook, run-deferred-hooks."""

from __future__ import annotations

import argparse
import subprocess
import time

from interlock.cli.arguments import positive_seconds, seconds_or_zero
from interlock.cli.output import echo, emit_json, table, warn
from interlock.errors import UsageError
from interlock.host import apply
from interlock.host.auto_restarts import blocked_services, set_auto_restarts
from interlock.host.hooks import HookStore, run_hook_command, validate_hook_name
from interlock.host.ledger import Ledger
from interlock.host.paths import HostPaths
from interlock.host.reboot import RebootNeed, local_need
from interlock.host.report import charm_show, status_message, with_reboot
from interlock.host.services import detect_manager
from interlock.host.services.base import DEFAULT_SETTLE

EXIT_OK = 0
EXIT_PENDING = 1
EXIT_FAILED = 1
EXIT_UNREADABLE = 3


def paths_of(args: argparse.Namespace) -> HostPaths:
    return HostPaths() if args.root == "/" else HostPaths.under(args.root)


def _age(timestamp: int) -> str:
    seconds = max(0, int(time.time()) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def reboot_need(args: argparse.Namespace, problems: list[str]) -> RebootNeed | None:
    try:
        return local_need(args.root)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        problems.append(f"cannot tell whether a reboot is needed: {exc}")
        return None


def cmd_status(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    view = Ledger(str(paths.ledger_dir)).read()
    hooks, hook_problems = HookStore(paths.state_dir).read()
    problems = [str(p) for p in view.problems + hook_problems]
    reboot = reboot_need(args, problems)
    message = with_reboot(status_message(view.events, hooks), reboot.message() if reboot else "")
    owed = view.events or hooks or (reboot is not None and reboot.needed)
    code = EXIT_UNREADABLE if problems else EXIT_PENDING if owed else EXIT_OK
    if args.metrics is not None:
        from interlock.host.atomic import write_atomic
        from interlock.host.metrics import render_ledger_metrics

        metrics = render_ledger_metrics(
            view.events,
            hooks,
            view.problems + hook_problems,
            blocked_services(paths.policy_dir),
            reboot,
        )
        write_atomic(args.metrics, metrics, mode=0o644)
    if args.json:
        emit_json(
            {
                "message": message,
                "services": sorted({event.unit for event in view.events}),
                "hooks": sorted({hook.name for hook in hooks}),
                "auto_restarts_blocked": blocked_services(paths.policy_dir),
                "reboot": reboot.as_dict() if reboot else None,
                "problems": problems,
                "exit_code": code,
            }
        )
    else:
        echo(message)
        for problem in problems:
            warn(problem)
    return code


def cmd_show(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    view = Ledger(str(paths.ledger_dir)).read()
    hooks, hook_problems = HookStore(paths.state_dir).read()
    fmt = "json" if args.json else args.format
    reboot_problems: list[str] = []
    reboot = reboot_need(args, reboot_problems) if fmt != "charm" else None
    if fmt == "charm":
        print(charm_show(view.events, hooks), end="")
    elif fmt == "json":
        emit_json(
            {
                "restarts": [event.as_dict() for event in view.events],
                "hooks": [hook.as_dict() for hook in hooks],
                "reboot": reboot.as_dict() if reboot else None,
                "problems": [str(p) for p in view.problems + hook_problems] + reboot_problems,
            }
        )
    else:
        if view.events:
            table(
                "Deferred restarts",
                ["service", "action", "since", "requestor", "reason"],
                [
                    (e.service, e.action, _age(e.timestamp), e.requestor, e.reason)
                    for e in view.events
                ],
            )
        if hooks:
            table(
                "Deferred hooks",
                ["hook", "since", "command"],
                [(h.name, _age(int(h.timestamp)), " ".join(h.command)) for h in hooks],
            )
        if not view.events and not hooks:
            echo("Nothing deferred.")
        if reboot is not None and reboot.needed:
            echo(reboot.message())
    for problem in [*map(str, view.problems + hook_problems), *reboot_problems]:
        warn(problem)
    return EXIT_UNREADABLE if view.problems or hook_problems else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    report = apply.check(paths_of(args), detect_manager())
    if args.json:
        emit_json(
            {
                "cleared": [e.as_dict() for e in report.cleared],
                "settled": [e.as_dict() for e in report.settled],
                "pending": [e.as_dict() for e in report.pending],
                "errors": report.errors,
                "missing": report.missing,
            }
        )
    else:
        for event in report.cleared:
            echo(f"cleared: {event.service} {event.action} ({event.reason}): it has restarted")
        for event in report.settled:
            echo(
                f"cleared: {event.service} {event.action} ({event.reason}): neither active nor "
                "enabled, a package's restart of it does nothing"
            )
        cleared = len(report.cleared) + len(report.settled)
        echo(f"{cleared} cleared, {len(report.pending)} still pending")
        for error in report.errors:
            warn(error)
        for unit in report.missing:
            warn(
                f"{unit}: no such service on this host; `interlock restart --deferred-only "
                f"--prune-missing` or `interlock clear {unit}` forgets its events"
            )
    return EXIT_PENDING if report.pending else EXIT_OK


RESTART_MARKS = {
    apply.RESTARTED: "ok  ",
    apply.SETTLED: "ok  ",
    apply.PRUNED: "gone",
    apply.MISSING: "MISS",
    apply.REFUSED: "SKIP",
    apply.FAILED: "FAIL",
}


def _print_restart_report(report: apply.RestartReport) -> None:
    for outcome in report.outcomes:
        mark = RESTART_MARKS[outcome.status]
        cleared = f", cleared {len(outcome.cleared)} event(s)" if outcome.cleared else ""
        echo(f"{mark} {outcome.service}: {outcome.detail}{cleared}")
    if report.not_attempted:
        echo(f"not attempted (still pending): {', '.join(report.not_attempted)}")


def _restart_json(report: apply.RestartReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "outcomes": [
            {
                "service": o.service,
                "ok": o.ok,
                "status": o.status,
                "detail": o.detail,
                "pid_before": o.before.pid if o.before else None,
                "pid_after": o.after.pid if o.after else None,
                "cleared": [e.as_dict() for e in o.cleared],
            }
            for o in report.outcomes
        ],
        "not_attempted": report.not_attempted,
    }


def cmd_restart(args: argparse.Namespace) -> int:
    report = apply.restart(
        paths_of(args),
        detect_manager(),
        args.services,
        args.deferred_only,
        args.timeout,
        args.settle,
        args.prune_missing,
    )
    if args.json:
        emit_json(_restart_json(report))
    elif not report.outcomes:
        echo("Nothing to restart.")
    else:
        _print_restart_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_clear(args: argparse.Namespace) -> int:
    events, hooks = apply.clear(paths_of(args), args.services, args.all)
    echo(f"cleared {events} deferred restart(s)" + (f" and {hooks} hook(s)" if args.all else ""))
    return EXIT_OK


def cmd_auto_restarts(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    if args.state == "status":
        blocked = blocked_services(paths.policy_dir)
    else:
        blocked = set_auto_restarts(paths.policy_dir, args.state == "on", args.service or [])
    if args.json:
        emit_json({"auto_restarts": "on" if not blocked else "off", "blocked": blocked})
    elif not blocked:
        echo("Auto restarts are on: package operations may restart services.")
    elif blocked == ["*"]:
        echo("Auto restarts are off for every service: restarts are deferred and recorded.")
    else:
        echo(f"Auto restarts are off for: {', '.join(blocked)}")
    return EXIT_OK


def cmd_hook_run(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("give the hook's command after --, e.g. hook run NAME -- CMD ARG…")
    validate_hook_name(args.name)
    store = HookStore(paths.state_dir)
    if blocked_services(paths.policy_dir):
        hook = store.record(args.name, command)
        echo(f"Auto restarts are off: hook {hook.name} deferred (interlock run-deferred-hooks)")
        return EXIT_OK
    from interlock.host.hooks import DeferredHook

    run_hook_command(DeferredHook(args.name, tuple(command), time.time()))
    return EXIT_OK


def cmd_run_deferred_hooks(args: argparse.Namespace) -> int:
    report = apply.run_deferred_hooks(paths_of(args), detect_manager())
    if args.json:
        emit_json(
            {
                "hooks_run": [h.as_dict() for h in report.hooks_run],
                "error": report.hook_error,
                "restarts": _restart_json(report.restarts) if report.restarts else None,
            }
        )
    else:
        for hook in report.hooks_run:
            echo(f"ok   hook {hook.name}")
        if report.hook_error:
            echo(f"FAIL {report.hook_error}")
        if report.restarts:
            _print_restart_report(report.restarts)
    ok = report.hook_error is None and (report.restarts is None or report.restarts.ok)
    return EXIT_OK if ok else EXIT_FAILED


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for programs")


# The top-level commands `register` adds (cli/main.py picks this group for them alone).
COMMANDS = (
    "status",
    "show",
    "check",
    "restart",
    "clear",
    "auto-restarts",
    "hook",
    "run-deferred-hooks",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    p = commands.add_parser(
        "status",
        help="one line: services queued for restart, hooks skipped, reboot required",
        formatter_class=fmt,
        description="Print the deferred-restart status in the OpenStack charms' wording, then "
        "whether the host needs a reboot (/run/reboot-required, or a newer kernel installed).",
        epilog="exit codes: 0 nothing owed, 1 something deferred or a reboot required, "
        "3 unreadable ledger files\n"
        "examples:\n"
        "  interlock status  →  Services queued for restart: cron, nova-compute\n"
        "  interlock status --metrics /var/lib/prometheus/node-exporter/interlock.prom",
    )
    _json_flag(p)
    p.add_argument(
        "--metrics",
        metavar="FILE",
        help="also write the ledger as Prometheus metrics (node_exporter textfile), atomically",
    )
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser(
        "show",
        help="list deferred restarts and hooks",
        formatter_class=fmt,
        description="Show the ledger: a table, the charms' show-deferred-events YAML, or JSON.",
        epilog="examples:\n  interlock show\n  interlock show --format charm",
    )
    p.add_argument("--format", choices=("table", "charm", "json"), default="table")
    _json_flag(p)
    p.set_defaults(handler=cmd_show)

    p = commands.add_parser(
        "check",
        help="clear events whose service has restarted since",
        description="Clear every deferred event whose service has started after the event "
        "(systemd InvocationID/start time, or the sysv process start time). Events of services "
        "that never started stay.",
    )
    _json_flag(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser(
        "restart",
        help="restart deferred (or named) services, one at a time, verified",
        formatter_class=fmt,
        description=(
            "Restart services one at a time through their service manager, verify each really\n"
            "restarted (a new instance: another systemd invocation, or another process, that\n"
            "stays up for the settle time while the old one is gone), and clear its deferred\n"
            "events only then. Stops at the first failed restart.\n\n"
            "Only services are restarted: plain names and .service units. NAME.socket goes\n"
            "with NAME: a socket that is not listening is settled by NAME's restart, a\n"
            "listening one whose service is not running is restarted itself. Targets, mounts,\n"
            "devices, slices, scopes, timers, paths, swaps and automounts are never acted on:\n"
            "they are reported as not restartable (`interlock clear UNIT` forgets them). A\n"
            "service that does not exist on this host is reported and skipped; the others\n"
            "still restart."
        ),
        epilog="exit codes: 0 nothing is left owed (every service restarted, settled or pruned)\n"
        "  1 something is left owed: a restart failed or was not attempted, a service is\n"
        "    missing (without --prune-missing), or a unit is not restartable\n"
        "examples:\n  interlock restart --deferred-only\n"
        "  interlock restart --deferred-only --prune-missing\n  interlock restart cron ssh",
    )
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--deferred-only", action="store_true", help="every service with events")
    p.add_argument(
        "--timeout", type=positive_seconds, default=60.0, help="seconds to wait per service"
    )
    p.add_argument(
        "--settle",
        type=seconds_or_zero,
        default=DEFAULT_SETTLE,
        metavar="SECONDS",
        help=f"how long a new instance must stay up to count (default {DEFAULT_SETTLE:g})",
    )
    p.add_argument(
        "--prune-missing",
        action="store_true",
        help="clear the events of services that do not exist on this host, naming them",
    )
    _json_flag(p)
    p.set_defaults(handler=cmd_restart)

    p = commands.add_parser("clear", help="forget deferred events without restarting")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--all", action="store_true", help="every event and every deferred hook")
    p.set_defaults(handler=cmd_clear)

    p = commands.add_parser(
        "auto-restarts",
        help="turn automatic restarts during package operations off or on",
        formatter_class=fmt,
        description="off: write /etc/policy-rc.d/interlock.policy blocking restart, stop and "
        "try-restart (for the named services, or all); package operations then defer and record "
        "them, and `interlock hook run` defers hooks. on: remove it (or the named services).",
        epilog="examples:\n  interlock auto-restarts off\n"
        "  interlock auto-restarts off --service nova-compute --service ovs-vswitchd\n"
        "  interlock auto-restarts on",
    )
    p.add_argument("state", choices=("off", "on", "status"))
    p.add_argument("--service", action="append", metavar="S", help="only this service (repeat)")
    _json_flag(p)
    p.set_defaults(handler=cmd_auto_restarts)

    hook = commands.add_parser(
        "hook", help="run a hook now, or defer it while auto restarts are off"
    )
    hook_commands = hook.add_subparsers(dest="hook_command", required=True, metavar="COMMAND")
    p = hook_commands.add_parser(
        "run",
        help="run NAME's command, or record it when auto restarts are off",
        formatter_class=fmt,
        epilog="example: interlock hook run config-changed -- puppet agent --onetime",
    )
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(handler=cmd_hook_run)

    p = commands.add_parser(
        "run-deferred-hooks",
        help="run deferred hooks in order, then the deferred restarts",
    )
    _json_flag(p)
    p.set_defaults(handler=cmd_run_deferred_hooks)
