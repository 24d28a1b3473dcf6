"""Host commands: status, show, check, restart, clear, auto-restarts, hook, run-deferred-hooks."""

from __future__ import annotations

import argparse
import time

from interlock.cli.output import emit_json, table, warn
from interlock.errors import UsageError
from interlock.host import apply
from interlock.host.auto_restarts import blocked_services, set_auto_restarts
from interlock.host.hooks import HookStore, run_hook_command, validate_hook_name
from interlock.host.ledger import Ledger
from interlock.host.paths import HostPaths
from interlock.host.report import charm_show, status_message
from interlock.host.services import detect_manager

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


def cmd_status(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    view = Ledger(str(paths.ledger_dir)).read()
    hooks, hook_problems = HookStore(paths.state_dir).read()
    problems = [str(p) for p in view.problems + hook_problems]
    message = status_message(view.events, hooks)
    code = EXIT_UNREADABLE if problems else EXIT_PENDING if (view.events or hooks) else EXIT_OK
    if args.metrics:
        from interlock.host.atomic import write_atomic
        from interlock.host.metrics import render_ledger_metrics

        metrics = render_ledger_metrics(
            view.events, hooks, view.problems + hook_problems, blocked_services(paths.policy_dir)
        )
        write_atomic(args.metrics, metrics, mode=0o644)
    if args.json:
        emit_json(
            {
                "message": message,
                "services": sorted({event.unit for event in view.events}),
                "hooks": sorted({hook.name for hook in hooks}),
                "auto_restarts_blocked": blocked_services(paths.policy_dir),
                "problems": problems,
                "exit_code": code,
            }
        )
    else:
        print(message)
        for problem in problems:
            warn(problem)
    return code


def cmd_show(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    view = Ledger(str(paths.ledger_dir)).read()
    hooks, hook_problems = HookStore(paths.state_dir).read()
    fmt = "json" if args.json else args.format
    if fmt == "charm":
        print(charm_show(view.events, hooks), end="")
    elif fmt == "json":
        emit_json(
            {
                "restarts": [event.as_dict() for event in view.events],
                "hooks": [hook.as_dict() for hook in hooks],
                "problems": [str(p) for p in view.problems + hook_problems],
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
            print("Nothing deferred.")
    for problem in view.problems + hook_problems:
        warn(str(problem))
    return EXIT_UNREADABLE if view.problems or hook_problems else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    report = apply.check(paths_of(args), detect_manager())
    if args.json:
        emit_json(
            {
                "cleared": [e.as_dict() for e in report.cleared],
                "pending": [e.as_dict() for e in report.pending],
                "errors": report.errors,
            }
        )
    else:
        for event in report.cleared:
            print(f"cleared: {event.service} {event.action} ({event.reason}): it has restarted")
        print(f"{len(report.cleared)} cleared, {len(report.pending)} still pending")
        for error in report.errors:
            warn(error)
    return EXIT_PENDING if report.pending else EXIT_OK


def _print_restart_report(report: apply.RestartReport) -> None:
    for outcome in report.outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        cleared = f", cleared {len(outcome.cleared)} event(s)" if outcome.cleared else ""
        print(f"{mark} {outcome.service}: {outcome.detail}{cleared}")
    if report.not_attempted:
        print(f"not attempted (still pending): {', '.join(report.not_attempted)}")


def _restart_json(report: apply.RestartReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "outcomes": [
            {
                "service": o.service,
                "ok": o.ok,
                "detail": o.detail,
                "cleared": [e.as_dict() for e in o.cleared],
            }
            for o in report.outcomes
        ],
        "not_attempted": report.not_attempted,
    }


def cmd_restart(args: argparse.Namespace) -> int:
    report = apply.restart(
        paths_of(args), detect_manager(), args.services, args.deferred_only, args.timeout
    )
    if args.json:
        emit_json(_restart_json(report))
    elif not report.outcomes:
        print("Nothing to restart.")
    else:
        _print_restart_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_clear(args: argparse.Namespace) -> int:
    events, hooks = apply.clear(paths_of(args), args.services, args.all)
    print(f"cleared {events} deferred restart(s)" + (f" and {hooks} hook(s)" if args.all else ""))
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
        print("Auto restarts are on: package operations may restart services.")
    elif blocked == ["*"]:
        print("Auto restarts are off for every service: restarts are deferred and recorded.")
    else:
        print(f"Auto restarts are off for: {', '.join(blocked)}")
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
        print(f"Auto restarts are off: hook {hook.name} deferred (interlock run-deferred-hooks)")
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
            print(f"ok   hook {hook.name}")
        if report.hook_error:
            print(f"FAIL {report.hook_error}")
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
        help="one line: services queued for restart, hooks skipped",
        formatter_class=fmt,
        description="Print the deferred-restart status in the OpenStack charms' wording.",
        epilog="exit codes: 0 nothing deferred, 1 something deferred, 3 unreadable ledger files\n"
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
        description="Restart services one at a time through their service manager, verify each "
        "really restarted, and clear its deferred events only then. Stops at the first failure.",
        epilog="examples:\n  interlock restart --deferred-only\n  interlock restart cron ssh",
    )
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--deferred-only", action="store_true", help="every service with events")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per service")
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
