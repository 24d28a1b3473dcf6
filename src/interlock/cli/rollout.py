"""`interlock rollout plan|run|resume|skip|abort|status`: apply per-host work across a fleet."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from interlock.cli.arguments import positive_count
from interlock.cli.output import echo, emit_json
from interlock.cli.runs import (
    EXIT_COMPLETE,
    cmd_status,
    confirm,
    execute_run,
    journal_option,
    output_options,
)
from interlock.fleet.inventory import DEFAULT_INVENTORY

SPEC_HELP = """\
A rollout is a target (-i INVENTORY, --limit), a per-host action and a schedule, from a YAML spec
(--spec FILE) and/or flags; flags override the spec. Per host: record the services' state, drain
its haproxy servers (--drain), the action, check it really restarted, the health gates
(--gate, N passes in a row), the soak, enable. A failed or interrupted host is cleaned up
(drains undone). Every step is journalled: a killed run resumes with `rollout resume`.

exit status: 0 complete, 1 error, 3 paused (resume, skip or abort), 4 aborted
"""


# --- building the plan from the command line -----------------------------------------------------


def spec_from_args(args: argparse.Namespace) -> Any:
    from interlock.rollout.spec import RolloutSpec, SpecFlags, apply_flags, load_spec

    spec = load_spec(args.spec) if args.spec else RolloutSpec()
    flags = SpecFlags(
        limit=args.limit,
        transport=args.transport,
        deferred=args.deferred,
        restart=tuple(args.restart or ()),
        command=args.command,
        check=args.check,
        action_timeout=args.action_timeout,
        interlock=args.interlock,
        canary=args.canary,
        waves=args.waves,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_unavailable=tuple(args.max_unavailable or ()),
        quorum=tuple(args.quorum or ()),
        stagger=args.stagger,
        jitter=args.jitter,
        windows=tuple(args.window or ()),
        drain=args.drain,
        drain_port=args.drain_port,
        drain_timeout=args.drain_timeout,
        on_drain_timeout=args.on_drain_timeout,
        on_failure_backend=args.on_failure_backend,
        gates=tuple(args.gate or ()),
        gate_passes=args.gate_passes,
        gate_interval=args.gate_interval,
        deadline=args.deadline,
        soak=args.soak,
        restarted_gate=args.restarted_gate,
        pre_gates=tuple(args.pre_gate or ()),
        pre_gate_timeout=args.pre_gate_timeout,
        failure_budget=args.failure_budget,
        on_failure=args.on_failure,
        reboot=args.reboot,
        reboot_command=args.reboot_command,
        reboot_timeout=args.reboot_timeout,
    )
    return apply_flags(spec, flags)


def plan_from_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from interlock.fleet.inventory_file import load_inventory
    from interlock.rollout.runs import plan_for

    spec = spec_from_args(args)
    inventory = load_inventory(args.inventory or spec.inventory or DEFAULT_INVENTORY)
    return spec, inventory, plan_for(spec, inventory)


def cmd_plan(args: argparse.Namespace) -> int:
    from interlock.rollout.plan import encode

    _, _, plan = plan_from_args(args)
    if args.json:
        emit_json(encode(plan))
    else:
        echo(plan)
    return EXIT_COMPLETE


# --- running ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import settings_for, start_run
    from interlock.rollout.states import RunKind

    spec, inventory, plan = plan_from_args(args)
    if not args.json:
        echo(plan)
        print()
    confirm(args, "Run this plan?")
    with Journal(args.journal) as journal:
        settings = settings_for(spec, inventory)
        settings["coordination"] = args.coordination or settings["coordination"]
        from interlock.cli.slots import check_reachable

        check_reachable(settings["coordination"])  # before the run exists: an error changes nothing
        run = start_run(journal, plan, settings, kind=RunKind.ROLLOUT, again=args.again)
        if not args.json:
            print(f"run {run.id} (journal {journal.path})", file=sys.stderr)
        return execute_run(args, journal, run)


def cmd_resume(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import pick_run

    with Journal(args.journal) as journal:
        run = pick_run(journal, args.run, active=True)
        if not args.json:
            print(f"resuming run {run.id} ({run.state})", file=sys.stderr)
        return execute_run(args, journal, run)


def cmd_skip(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import pick_run, skip

    with Journal(args.journal) as journal:
        run = pick_run(journal, args.run, active=True)
        print(skip(journal, run, args.host))
    return EXIT_COMPLETE


def cmd_abort(args: argparse.Namespace) -> int:
    from interlock.rollout.events import EventBus, TextLog
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import abort, pick_run

    with Journal(args.journal) as journal:
        run = pick_run(journal, args.run, active=True)
        confirm(args, f"Abort run {run.id} (hosts under way are cleaned up)?")
        bus = EventBus()
        bus.subscribe(TextLog(sys.stderr))
        print(abort(journal, run, bus))
    return EXIT_COMPLETE


# --- the parser -----------------------------------------------------------------------------------


def _target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i", "--inventory", help=f"inventory (default: the spec's, else {DEFAULT_INVENTORY})"
    )
    p.add_argument("--limit", help="host pattern: name, group, glob, a:b, a:&b, a:!b")
    p.add_argument("--spec", metavar="FILE", help="rollout spec (YAML); flags override it")
    p.add_argument(
        "--transport",
        choices=("ssh", "local"),
        help="reach hosts over SSH (default), or run every host's commands on this machine",
    )
    action = p.add_argument_group("action (one of; default: --deferred interlock)")
    action.add_argument(
        "--deferred",
        choices=("interlock", "ledger"),
        help="apply each host's deferred restarts: with interlock on the host, or from its "
        "ledger for hosts without it",
    )
    action.add_argument("--restart", action="append", metavar="SERVICE", help="restart (repeat)")
    action.add_argument("--command", metavar="CMD", help="run CMD on each host (split like sh)")
    action.add_argument("--check", metavar="CMD", help="with --command: exit 0 = already done")
    action.add_argument("--action-timeout", metavar="DURATION", help="per action (default 2m)")
    action.add_argument(
        "--interlock", metavar="CMD", help="interlock on the hosts (default: interlock)"
    )
    reboot = p.add_argument_group("reboots (with the deferred action)")
    reboot.add_argument(
        "--reboot",
        nargs="?",
        const="needed",
        choices=("needed", "always"),
        help="reboot the hosts that need it (reboot-required, a newer kernel) instead of "
        "restarting their deferred services; `always`: every host",
    )
    reboot.add_argument(
        "--reboot-command", metavar="CMD", help="how a host reboots (default: systemctl reboot)"
    )
    reboot.add_argument(
        "--reboot-timeout", metavar="DURATION", help="to come back from a new boot (default 10m)"
    )
    sched = p.add_argument_group("schedule")
    sched.add_argument("--canary", metavar="N|P%", help="hosts in the first batch")
    sched.add_argument("--waves", metavar="LIST", help="cumulative targets, e.g. 25%%,50%%,100%%")
    sched.add_argument("--batch-size", metavar="N|P%", help="batches after the waves (default 1)")
    sched.add_argument("--concurrency", type=int, metavar="N", help="hosts at once in a batch")
    sched.add_argument(
        "--max-unavailable",
        action="append",
        metavar="LABEL[:VALUE]=N|P%",
        help="per group of a label, e.g. role=1, az=25%%, role:compute=5 (repeat)",
    )
    sched.add_argument(
        "--quorum", action="append", metavar="LABEL", help="groups lose ≤ 1 (repeat)"
    )
    sched.add_argument("--stagger", metavar="DURATION", help="between host starts in a batch")
    sched.add_argument("--jitter", metavar="DURATION", help="random extra stagger, up to this")
    sched.add_argument(
        "--window",
        action="append",
        metavar="'DAYS HH:MM-HH:MM [TZ]'",
        help="maintenance window, e.g. 'mon-fri 22:00-04:00 Europe/Berlin' (repeat)",
    )
    lb = p.add_argument_group("load balancers")
    lb.add_argument(
        "--drain",
        dest="drain",
        action="store_true",
        default=None,
        help="drain the host's haproxy servers around the action",
    )
    lb.add_argument("--no-drain", dest="drain", action="store_false")
    lb.add_argument("--drain-port", type=int, metavar="PORT", help="only servers on this port")
    lb.add_argument("--drain-timeout", metavar="DURATION", help="wait for sessions (default 30s)")
    lb.add_argument("--on-drain-timeout", choices=("fail", "force", "continue"))
    lb.add_argument(
        "--on-failure-backend",
        choices=("enable", "leave-drained"),
        help="cleanup of a failed host: re-enable its servers (default) or leave them drained",
    )
    gates = p.add_argument_group("gates")
    gates.add_argument(
        "--gate",
        action="append",
        metavar="PROBE",
        help="post-gate: http://{address}:8080/health, tcp://{address}:22, cmd:COMMAND (repeat)",
    )
    gates.add_argument("--gate-passes", type=int, metavar="N", help="in a row (default 1)")
    gates.add_argument("--gate-interval", metavar="DURATION", help="between rounds (default 1s)")
    gates.add_argument("--deadline", metavar="DURATION", help="for each post-gate (default 2m)")
    gates.add_argument("--soak", metavar="DURATION", help="healthy for this long after the gates")
    gates.add_argument(
        "--restarted-gate",
        dest="restarted_gate",
        action="store_true",
        default=None,
        help="check the services really restarted (default for restarts)",
    )
    gates.add_argument("--no-restarted-gate", dest="restarted_gate", action="store_false")
    gates.add_argument(
        "--pre-gate",
        action="append",
        metavar="CHECK",
        help="before each batch: http://…, cmd:COMMAND, rabbitmq=MAX@URL, alerts=REGEX@URL",
    )
    gates.add_argument("--pre-gate-timeout", metavar="DURATION", help="(default 10m)")
    fail = p.add_argument_group("failures")
    fail.add_argument("--failure-budget", metavar="N|P%", help="failed hosts allowed (default 0)")
    fail.add_argument(
        "--on-failure", choices=("pause", "abort"), help="over budget (default pause)"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser(
        "rollout",
        help="apply deferred restarts (or any per-host action) across the fleet, in batches",
        formatter_class=fmt,
        description=SPEC_HELP,
    )
    sub = group.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "plan",
        help="print exactly what `run` would do, batch by batch and host by host",
        formatter_class=fmt,
        description="Build the plan from the spec and flags and print it; nothing is touched.\n\n"
        + SPEC_HELP,
        epilog="examples:\n"
        "  interlock rollout plan -i inventory.yaml --canary 1 --waves 50%,100% \\\n"
        "      --max-unavailable role=1 --drain --gate 'http://{address}:8080/health'\n"
        "  interlock rollout plan --spec restarts.yaml --json",
    )
    _target_options(p)
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
        "run",
        help="show the plan, then execute it (journalled, resumable)",
        formatter_class=fmt,
        description="Print the plan, ask, and execute it. Ctrl-C once finishes the hosts under "
        "way and pauses; twice interrupts them too (they are cleaned up). Hosts whose same work "
        "a previous run finished are done already (--again repeats it).\n\n" + SPEC_HELP,
        epilog="examples:\n"
        "  interlock rollout run -i inventory.yaml --limit controllers --drain \\\n"
        "      --gate 'http://{address}:8080/health' --gate-passes 3 --soak 10s --yes\n"
        "  interlock rollout run --spec restarts.yaml --events run.jsonl --metrics "
        "/var/lib/prometheus/node-exporter/rollout.prom",
    )
    _target_options(p)
    journal_option(p)
    output_options(p)
    p.add_argument("--again", action="store_true", help="redo hosts a previous run finished")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "resume",
        help="continue a paused or interrupted run where it stopped",
        formatter_class=fmt,
        description="Continue the run (default: the latest unfinished one). Steps that were "
        "under way when it stopped are checked and done again if needed; failed hosts get "
        "another attempt.",
        epilog="examples:\n  interlock rollout resume\n"
        "  interlock rollout resume 20250101-120000-ab12cd",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest unfinished run)")
    journal_option(p)
    output_options(p)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser(
        "skip",
        help="leave a pending or failed host out of a run",
        formatter_class=fmt,
        description="Mark HOST skipped in the run (default: the latest unfinished one); it no "
        "longer counts as failed, and a resume does not touch it.",
        epilog="example:\n  interlock rollout skip ctl2 && interlock rollout resume",
    )
    p.add_argument("host")
    p.add_argument("--run", help="run id (default: the latest unfinished run)")
    journal_option(p)
    p.set_defaults(handler=cmd_skip)

    p = sub.add_parser(
        "abort",
        help="end a run: hosts under way are cleaned up, the others are left untouched",
        formatter_class=fmt,
        description="A run being executed is told to stop through the journal; a paused or "
        "killed run is cleaned up here (drains undone for hosts it left mid-way).",
        epilog="example:\n  interlock rollout abort --yes",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest unfinished run)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    journal_option(p)
    p.set_defaults(handler=cmd_abort)

    p = sub.add_parser(
        "status",
        help="a run's state, host by host",
        formatter_class=fmt,
        description="The run (default: the latest) with each host's state, attempt and last "
        "step. Exit status 0 when complete, 3 while unfinished, 4 when aborted.",
        epilog="examples:\n  interlock rollout status\n  interlock rollout status --list\n"
        "  interlock rollout status 20250101-120000-ab12cd --json",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest run)")
    p.add_argument(
        "--list", type=positive_count, nargs="?", const=20, metavar="N", help="the last N runs"
    )
    journal_option(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=cmd_status)
