"""`interlock detect`: what needs a restart besides what the gate deferred, and the apt hooks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from interlock.cli.output import echo, emit_json, table, warn

if TYPE_CHECKING:
    from interlock.detect.detection import DetectionReport

EXIT_NOTHING = 0
EXIT_FOUND = 1
EXIT_PROBLEMS = 3

DETECT_EPILOG = """\
examples:
  interlock detect                 list what needs a restart, change nothing
  interlock detect --json          the same for programs
  interlock detect --record        record deferred restarts (and apply the restart map)

What it looks at:
  watched files   restart maps in /etc/interlock/watch.d/*.yaml (path or glob → services):
                    /etc/neutron/neutron.conf: [neutron-server, neutron-dhcp-agent]
                    /etc/neutron/plugins/ml2/*.ini: [neutron-server]
                  a created, changed or deleted file means its services need a restart. With
                  --record: services whose restart a policy blocks (auto restarts off) get one
                  event each, "File(s) changed: <paths>"; the others are restarted one at a
                  time and verified (the first failure stops the rest, which are recorded).
                  A pattern seen for the first time only records its baseline.
  processes       processes mapping deleted or replaced executables or libraries, and Python
                  programs whose imported packages dpkg upgraded after they started (found by
                  reading their sources; their interpreter is never run, their environment
                  never read), mapped to their service (systemd cgroup, sysv pidfile).

exit codes: 0 nothing found, 1 something needs a restart, 3 a restart map is unreadable"""

HOOKS_EPILOG = """\
Installs /etc/apt/apt.conf.d/50interlock and /usr/lib/interlock/apt-hook: before dpkg runs,
apt snapshots the installed packages; after it, every service (init script, or .service unit
under systemd) of every upgraded or reinstalled package that runs but did not restart during the
transaction gets one event, "Package update: <package> <old> → <new>" (this includes the units
deb-systemd-invoke skipped after its first refused one). The hooks never make apt fail.
If needrestart is installed, /etc/needrestart/conf.d/zz-interlock.conf makes it list instead of
restart the services a policy blocks ($nrconf{override_rc}), or list only ($nrconf{restart} = 'l')
while auto restarts are off for every service; it is rewritten before every apt run."""


def _print_report(report: DetectionReport) -> None:
    if report.watch is not None:
        scan = report.watch.scan
        if scan.changes:
            table(
                "Watched files changed",
                ["change", "file", "services"],
                [(c.change, c.path, ", ".join(c.services)) for c in scan.changes],
            )
        for pattern in scan.baseline:
            echo(f"watching {pattern} from now on (baseline recorded)")
        for action in report.watch.actions:
            detail = f" ({action.detail})" if action.detail else ""
            echo(f"{action.service}: {action.action}{detail}")
        for problem in scan.problems:
            warn(str(problem))
    if report.processes is not None and report.processes.findings:
        table(
            "Processes running outdated code",
            ["pid", "command", "service", "why"],
            [
                (f.pid, f.command, f.service or "(no service)", f.reason)
                for f in report.processes.findings
            ],
        )
    for recorded in report.recorded:
        echo(f"{recorded.service}: {recorded.outcome}: {recorded.event.reason}")
    if not report.found:
        echo("Nothing needs a restart.")


def cmd_detect(args: argparse.Namespace) -> int:
    from interlock.detect.detection import detect
    from interlock.detect.system import System

    report = detect(
        System.live(args.root),
        record=args.record,
        watch=not args.no_watch,
        processes=not args.no_processes,
    )
    problems = report.watch.scan.problems if report.watch else []
    if args.json:
        emit_json(
            {
                "watch": None
                if report.watch is None
                else {
                    "changes": [c.as_dict() for c in report.watch.scan.changes],
                    "baseline": report.watch.scan.baseline,
                    "actions": [a.as_dict() for a in report.watch.actions],
                    "problems": [str(p) for p in problems],
                },
                "processes": None
                if report.processes is None
                else {
                    "scanned": report.processes.scanned,
                    "findings": [f.as_dict() for f in report.processes.findings],
                    "other_mount_namespace": list(report.processes.foreign),
                },
                "services": report.process_reasons(),
                "recorded": [
                    {"service": r.service, "outcome": r.outcome, "event": r.event.as_dict()}
                    for r in report.recorded
                ],
            }
        )
    else:
        _print_report(report)
    if problems:
        return EXIT_PROBLEMS
    return EXIT_FOUND if report.found else EXIT_NOTHING


def cmd_install_hooks(args: argparse.Namespace) -> int:
    from interlock.detect.apt_hooks import HookFiles, install_hooks
    from interlock.detect.system import System

    for line in install_hooks(HookFiles.under(args.root), System.live(args.root)):
        echo(line)
    return EXIT_NOTHING


def cmd_uninstall_hooks(args: argparse.Namespace) -> int:
    from interlock.detect.apt_hooks import HookFiles, uninstall_hooks

    for line in uninstall_hooks(HookFiles.under(args.root)) or ["no hooks were installed"]:
        echo(line)
    return EXIT_NOTHING


def cmd_snapshot(args: argparse.Namespace) -> int:
    from interlock.detect.system import System
    from interlock.detect.transaction import begin

    snapshot, kept = begin(System.live(args.root))
    verb = "an unfinished transaction's snapshot is kept" if kept else "snapshot taken"
    echo(f"{verb}: {len(snapshot.packages)} packages")
    return EXIT_NOTHING


def cmd_reconcile(args: argparse.Namespace) -> int:
    from interlock.detect.system import System
    from interlock.detect.transaction import finish

    report = finish(System.live(args.root))
    if args.json:
        emit_json(report.as_dict())
        return EXIT_NOTHING
    if not report.had_snapshot:
        echo("No transaction snapshot: run `interlock detect snapshot` before dpkg runs.")
        return EXIT_NOTHING
    for change in report.changes:
        echo(f"changed: {change.describe()}")
    for outcome in report.services:
        echo(f"{outcome.service}: {outcome.outcome} ({outcome.reason})")
    if not report.changes:
        echo("No package changed.")
    return EXIT_NOTHING


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    detect = commands.add_parser(
        "detect",
        help="find what needs a restart: changed config files, outdated processes",
        formatter_class=fmt,
        description="Find services that need a restart for reasons the gate never sees:\n"
        "watched configuration files that changed, processes running deleted or replaced\n"
        "binaries and libraries, Python services whose packages were upgraded.\n"
        "Lists only, unless --record.",
        epilog=DETECT_EPILOG,
    )
    detect.add_argument("--json", action="store_true", help="print JSON for programs")
    detect.add_argument(
        "--record", action="store_true", help="record events (and apply the restart map)"
    )
    detect.add_argument("--no-watch", action="store_true", help="skip the watched files")
    detect.add_argument("--no-processes", action="store_true", help="skip the /proc scan")
    detect.set_defaults(handler=cmd_detect)
    sub = detect.add_subparsers(dest="detect_command", metavar="COMMAND")

    p = sub.add_parser(
        "install-hooks",
        help="install the apt hooks that reconcile each package transaction",
        formatter_class=fmt,
        description="Install the apt Pre-Invoke/Post-Invoke hooks (idempotent).",
        epilog=HOOKS_EPILOG,
    )
    p.set_defaults(handler=cmd_install_hooks)

    p = sub.add_parser(
        "uninstall-hooks",
        help="remove the apt hooks and the needrestart snippet",
        description="Remove what install-hooks wrote (idempotent).",
    )
    p.set_defaults(handler=cmd_uninstall_hooks)

    p = sub.add_parser(
        "snapshot",
        help="start a package transaction (what the Pre-Invoke hook runs)",
        description="Store the installed packages' versions and the ledger's state, for a later "
        "`interlock detect reconcile`. Use it around a bare `dpkg -i`, which runs no apt hook.",
    )
    p.set_defaults(handler=cmd_snapshot)

    p = sub.add_parser(
        "reconcile",
        help="finish a package transaction (what the Post-Invoke hook runs)",
        formatter_class=fmt,
        description="Compare the packages with the stored snapshot and record a deferred "
        "restart for every running service of a changed package that did not restart since.",
        epilog="example:\n  interlock detect snapshot && dpkg -i foo.deb; "
        "interlock detect reconcile",
    )
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=cmd_reconcile)
