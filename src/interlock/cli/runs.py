"""What `rollout` and `upgrade` share: the journal and output options, confirmation, executing
a journalled run with its display, and a run's status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from interlock.cli.output import echo, emit_json, table
from interlock.errors import InterlockError, UsageError
from interlock.rollout.states import HostState, RunState

EXIT_COMPLETE = 0
EXIT_PAUSED = 3
EXIT_ABORTED = 4


def journal_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journal",
        metavar="PATH",
        help="journal database (default ~/.local/state/interlock/journal.sqlite)",
    )
    from interlock.cli.slots import coordination_option

    coordination_option(p)


def output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--events", metavar="FILE", help="append JSON-lines events to FILE")
    p.add_argument("--log", metavar="FILE", help="append a human-readable log to FILE")
    p.add_argument("--metrics", metavar="FILE", help="Prometheus textfile, rewritten atomically")
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no live display")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")


def start_recorded_run(
    args: argparse.Namespace, journal: Any, plan: Any, settings: dict[str, Any], **how: Any
) -> Any:
    """Record a new run (`how`: its kind, `again`). It keeps the coordination the command line
    names (else its spec's), so `resume` and `abort` share the same budget without being told
    again; the store must answer first, so an error changes nothing."""
    from interlock.cli.slots import check_reachable
    from interlock.rollout.runs import start_run

    settings["coordination"] = args.coordination or settings.get("coordination")
    check_reachable(settings["coordination"])
    run = start_run(journal, plan, settings, **how)
    if not args.json:
        print(f"run {run.id} (journal {journal.path})", file=sys.stderr)
    return run


def confirm(args: argparse.Namespace, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("not a terminal: give --yes to go ahead without a question")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise InterlockError("not confirmed: nothing was done")


@contextmanager
def subscribers(args: argparse.Namespace, bus: Any) -> Iterator[tuple[Any, Any]]:
    """Wire the event stream to the files and the display the flags ask for."""
    from interlock.rollout.events import JsonLinesFile, TextLog
    from interlock.rollout.metrics import RunTally, TextfileMetrics

    with ExitStack() as stack:
        tally = RunTally()
        bus.subscribe(tally)
        if args.events:
            sink = JsonLinesFile(args.events)
            stack.callback(sink.close)
            bus.subscribe(sink)
        if args.log:
            log = TextLog.open(args.log)
            stack.callback(log.close)
            bus.subscribe(log)
        if args.metrics:
            bus.subscribe(TextfileMetrics(args.metrics, tally))
        live = None
        if not args.json and not args.no_progress and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            from interlock.rollout.progress import ProgressView

            view = ProgressView()
            bus.subscribe(view)
            live = Live(
                get_renderable=view.render,
                console=Console(stderr=True),
                refresh_per_second=4,
                transient=False,
            )
            stack.enter_context(live)
        elif not args.json:
            bus.subscribe(TextLog(sys.stderr))
        yield tally, live


def execute_run(args: argparse.Namespace, journal: Any, run: Any) -> int:
    """Execute (or resume) a run with the display and files the flags ask for; the exit status."""
    from interlock.cli.slots import chosen_coordination
    from interlock.rollout.events import EventBus
    from interlock.rollout.runs import execute_in_foreground

    bus = EventBus()
    with subscribers(args, bus) as (tally, _):
        outcome = execute_in_foreground(journal, run, bus, coordination=chosen_coordination(args))
    if args.json:
        emit_json(
            {
                "run": run.id,
                "state": outcome.state,
                "reason": outcome.reason,
                HostState.DONE: outcome.done,
                HostState.FAILED: outcome.failed,
                HostState.SKIPPED: outcome.skipped,
                HostState.PENDING: outcome.pending,
            }
        )
    else:
        echo("\n".join(tally.summary_lines()))
        if outcome.state == RunState.PAUSED:
            print(
                f"paused: `interlock rollout resume {run.id}` continues, "
                f"`interlock rollout skip HOST --run {run.id}` leaves a host out, "
                f"`interlock rollout abort {run.id}` ends it"
            )
    exits = {RunState.COMPLETE: EXIT_COMPLETE, RunState.PAUSED: EXIT_PAUSED}
    return exits.get(outcome.state, EXIT_ABORTED)


def cmd_status(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import pick_run, recent_runs, status

    if args.list:
        with Journal(args.journal) as journal:
            runs = recent_runs(journal, args.list)
        if args.json:
            emit_json(runs)
        else:
            table(
                None,
                ["run", "state", "started", "hosts", "what"],
                [(r["run"], r["state"], r["created"], r["hosts"], r["title"]) for r in runs],
            )
        return EXIT_COMPLETE
    with Journal(args.journal) as journal:
        run = pick_run(journal, args.run, active=False)
        report = status(journal, run)
    if args.coordination:
        from interlock.cli.slots import shared_holdings

        report["holdings"] = shared_holdings(args.coordination)
    if args.json:
        emit_json(report)
    else:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(report["counts"].items()))
        executing = " (executing now)" if report["executing"] else ""
        echo(f"run {report['run']}: {report['state']}{executing} — {report['title']}")
        echo(f"started {report['created']}, last change {report['updated']}; hosts: {counts}")
        if report["reason"]:
            echo(f"reason: {report['reason']}")
        table(
            None,
            ["batch", "stage", "host", "state", "try", "last step", "detail"],
            [
                (
                    h["batch"],
                    h["stage"],
                    h["host"],
                    h["state"],
                    h["attempt"],
                    _last_step(h["steps"]),
                    (h["detail"] or "")[:80],
                )
                for h in report["hosts"]
            ],
        )
        if args.coordination:
            from interlock.cli.slots import print_holdings

            print_holdings(report["holdings"])
    exits = {RunState.COMPLETE: EXIT_COMPLETE, RunState.ABORTED: EXIT_ABORTED}
    return exits.get(report["state"], EXIT_PAUSED)


def _last_step(steps: list[dict[str, Any]]) -> str:
    if not steps:
        return ""
    last = steps[-1]
    took = f" {last['seconds']:.1f}s" if last["seconds"] is not None else ""
    return f"{last['step']} {last['state']}{took}"
