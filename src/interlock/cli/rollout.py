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
    start_recorded_run,
)
from interlock.fleet.inventory import DEFAULT_INVENTORY
from interlock.rollout.options import add_options, apply_options, options_given

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
    from interlock.rollout.spec import RolloutSpec, load_spec

    spec = load_spec(args.spec) if args.spec else RolloutSpec()
    return apply_options(spec, options_given(args))


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
    from interlock.rollout.runs import settings_for
    from interlock.rollout.states import RunKind

    spec, inventory, plan = plan_from_args(args)
    if not args.json:
        echo(plan)
        print()
    confirm(args, "Run this plan?")
    with Journal(args.journal) as journal:
        settings = settings_for(spec, inventory)
        run = start_recorded_run(
            args, journal, plan, settings, kind=RunKind.ROLLOUT, again=args.again
        )
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
    p.add_argument("--spec", metavar="FILE", help="rollout spec (YAML); flags override it")
    # What the flags change in the spec: the option table, the single place to add one.
    add_options(p)


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
