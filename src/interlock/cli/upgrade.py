"""`interlock upgrade facts|plan|run|resume|abort|status`: a release upgrade from a recipe."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from interlock.cli.arguments import positive_count
from interlock.cli.output import echo, emit_json, table
from interlock.cli.runs import (
    cmd_status,
    confirm,
    execute_run,
    journal_option,
    output_options,
    start_recorded_run,
)
from interlock.errors import UsageError
from interlock.fleet.inventory import DEFAULT_INVENTORY

ABOUT = """\
A recipe (YAML) describes a release upgrade: the apt repository to switch to, the roles and their
inventory groups, shared dependencies to pre-install, and the projects in order with their
haproxy backends, services, packages, database steps, health gates and concurrency. RECIPE is a
file or the name of a recipe shipped with interlock (`openstack`).

The plan is compiled from the recipe, the inventory and each host's facts, read over SSH:
installed versions (dpkg-query) and the candidates of the release's repository (apt-cache policy
against a scratch copy of the host's sources; nothing on the host changes). Only packages that
are installed and have a newer candidate are installed, so a host already at the release does
nothing, and an upgraded fleet gets no plan at all.

`run` executes the plan through the rollout engine: every step journalled (resume after a
crash), a failed host cleaned up (backends enabled, services released), a failure budget,
progress, JSON-lines events, a log and Prometheus metrics.

exit status: 0 complete (or nothing to do), 1 error, 3 paused (resume or abort), 4 aborted
"""


def load_recipe_arg(text: str) -> Any:
    from interlock.upgrade.recipe import builtin_recipe_path, load_recipe

    path = Path(text)
    if not path.exists() and "/" not in text and builtin_recipe_path(text).exists():
        path = builtin_recipe_path(text)
    return load_recipe(path)


def gather(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """The recipe, the inventory, each role's hosts and their facts (from --facts or live)."""
    from interlock.fleet.inventory_file import load_inventory
    from interlock.upgrade.facts import gather_facts, load_facts, role_hosts

    recipe = load_recipe_arg(args.recipe)
    inventory = load_inventory(args.inventory or DEFAULT_INVENTORY)
    roles = role_hosts(recipe, inventory, args.limit)
    if not any(roles.values()):
        raise UsageError("no inventory host is in any of the recipe's roles")
    if getattr(args, "facts", None):
        return recipe, inventory, roles, load_facts(args.facts)

    async def read() -> Any:
        from interlock.fleet.transport.kinds import open_transport

        transport = open_transport(args.transport, inventory.known_hosts)
        try:
            return await gather_facts(transport, recipe, roles, args.window)
        finally:
            await transport.close()

    if not args.json:
        count = len({host.name for hosts in roles.values() for host in hosts})
        print(
            f"reading the facts of {count} hosts (installed and candidate versions)…",
            file=sys.stderr,
        )
    return recipe, inventory, roles, asyncio.run(read())


def compiled(args: argparse.Namespace) -> tuple[Any, Any]:
    from interlock.upgrade.compiler import compile_upgrade

    recipe, inventory, roles, facts = gather(args)
    return inventory, compile_upgrade(recipe, roles, facts)


def plan_document(upgrade: Any) -> dict[str, Any]:
    from interlock.rollout.plan import encode
    from interlock.upgrade.plan_text import natural_key

    hosts = [] if upgrade.plan is None else {hp.host.name for hp in upgrade.plan.hosts}
    interruptions = []  # a list: JSON output sorts mapping keys, and hosts go in natural order
    for name in sorted(hosts, key=natural_key):
        times = upgrade.interruptions.get(name, ())
        interruptions.append(
            {
                "host": name,
                "count": len(times),
                "seconds": [round(value, 1) for value in times],
                "total_seconds": round(sum(times), 1),
            }
        )
    return {
        "recipe": upgrade.recipe.name,
        "recipe_path": upgrade.recipe.path,
        "first_controller": upgrade.first_controller,
        "projects": list(upgrade.projects),
        "notes": list(upgrade.notes),
        "estimate_seconds": round(upgrade.seconds, 1),
        "makespan_seconds": round(upgrade.seconds, 1),
        "visits": {role: list(projects) for role, projects in upgrade.visits.items()},
        "interruptions": interruptions,
        "batch_estimates": {key: round(value, 1) for key, value in upgrade.estimates.items()},
        "plan": None if upgrade.plan is None else encode(upgrade.plan),
    }


# --- commands -----------------------------------------------------------------------------------


def cmd_facts(args: argparse.Namespace) -> int:
    from interlock.upgrade.facts import facts_to_json

    _, _, roles, facts = gather(args)
    if args.json:
        emit_json(facts_to_json(facts))
        return 0
    rows = []
    for role, hosts in roles.items():
        for host in hosts:
            fact = facts[host.name]
            for package in fact.packages.values():
                if package.installed is None:
                    continue
                rows.append(
                    (
                        host.name,
                        role,
                        package.name,
                        package.installed,
                        package.candidate or "",
                        "upgrade" if package.upgradable else "",
                    )
                )
            if fact.vip:
                rows.append((host.name, role, "(holds the VIP)", "", "", ""))
    table(None, ["host", "role", "package", "installed", "candidate", ""], rows)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from interlock.upgrade.plan_text import render

    _, upgrade = compiled(args)
    if args.json:
        emit_json(plan_document(upgrade))
    else:
        echo(render(upgrade))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import settings_for
    from interlock.rollout.spec import RolloutSpec
    from interlock.rollout.states import RunKind, RunState
    from interlock.upgrade.plan_text import render

    inventory, upgrade = compiled(args)
    if not args.json:
        echo(render(upgrade))
        echo()
    if upgrade.plan is None:
        if args.json:
            emit_json({"run": None, "state": RunState.COMPLETE, "reason": "nothing to upgrade"})
        return 0
    confirm(args, "Run this upgrade?")
    spec = RolloutSpec(path=upgrade.recipe.path, transport=args.transport)
    with Journal(args.journal) as journal:
        # The facts already left out what is done: nothing is carried over from earlier runs.
        settings = settings_for(spec, inventory)
        run = start_recorded_run(
            args, journal, upgrade.plan, settings, kind=RunKind.UPGRADE, again=True
        )
        return int(execute_run(args, journal, run))


def pick_upgrade_run(journal: Any, run_id: str | None) -> Any:
    """The given run, or the latest unfinished upgrade run."""
    from interlock.rollout.runs import pick_run
    from interlock.rollout.states import RunKind

    return pick_run(journal, run_id, active=True, kind=RunKind.UPGRADE)


def cmd_resume(args: argparse.Namespace) -> int:
    from interlock.rollout.journal import Journal

    with Journal(args.journal) as journal:
        run = pick_upgrade_run(journal, args.run)
        if not args.json:
            print(f"resuming run {run.id} ({run.state})", file=sys.stderr)
        return int(execute_run(args, journal, run))


def cmd_abort(args: argparse.Namespace) -> int:
    from interlock.rollout.events import EventBus, TextLog
    from interlock.rollout.journal import Journal
    from interlock.rollout.runs import abort

    with Journal(args.journal) as journal:
        run = pick_upgrade_run(journal, args.run)
        confirm(args, f"Abort upgrade run {run.id} (hosts under way are cleaned up)?")
        bus = EventBus()
        bus.subscribe(TextLog(sys.stderr))
        echo(abort(journal, run, bus))
        echo(
            "config management stays paused where the upgrade paused it; the next "
            "`interlock upgrade run` resumes it in its finalize phase"
        )
    return 0


# --- the parser ---------------------------------------------------------------------------------


def _target_options(p: argparse.ArgumentParser, *, facts: bool) -> None:
    p.add_argument("recipe", metavar="RECIPE", help="recipe file, or a shipped one: openstack")
    p.add_argument("-i", "--inventory", help=f"inventory (default {DEFAULT_INVENTORY})")
    p.add_argument("--limit", help="only these hosts (pattern: name, group, glob, a:b, a:!b)")
    p.add_argument(
        "--transport",
        choices=("ssh", "local"),
        default="ssh",
        help="reach hosts over SSH (default), or run every host's commands on this machine",
    )
    p.add_argument(
        "--window", type=positive_count, default=24, metavar="N", help="hosts probed at once"
    )
    if facts:
        p.add_argument(
            "--facts",
            metavar="FILE",
            help="use facts saved by `upgrade facts --json` instead of reading the hosts",
        )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser(
        "upgrade",
        help="a release upgrade from a recipe: plan it, run it, resume it",
        formatter_class=fmt,
        description=ABOUT,
    )
    sub = group.add_subparsers(dest="upgrade_command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "facts",
        help="each host's installed and candidate versions of the recipe's packages",
        formatter_class=fmt,
        description="Read each host's facts: installed versions, the candidates of the "
        "release's repository, the recipe's services present, the VIP holder. Nothing on the "
        "hosts changes. `--json` output can be given to `plan --facts`.",
        epilog="examples:\n  interlock upgrade facts openstack -i inventory.yaml\n"
        "  interlock upgrade facts my-recipe.yaml -i inventory.yaml --json > facts.json",
    )
    _target_options(p, facts=False)
    p.add_argument("--json", action="store_true", help="the facts as JSON")
    p.set_defaults(handler=cmd_facts)

    p = sub.add_parser(
        "plan",
        help="print exactly what `run` would do, with the commands per host and a duration",
        formatter_class=fmt,
        description="Compile the plan and print it: phases, projects, batches, each host's "
        "steps with their exact commands, what cleanup does on failure, the estimated makespan "
        "(the executor's sliding window replayed with the recipe's concurrency, waits and step "
        "estimates), and per host how many times its services are held and for how long. "
        "Roles the recipe visits once (`visits: {compute: once}`) take all their projects in "
        "one visit per host.\n\n" + ABOUT,
        epilog="examples:\n  interlock upgrade plan openstack -i inventory.yaml\n"
        "  interlock upgrade plan my-recipe.yaml -i inventory.yaml --limit 'controllers:net*'\n"
        "  interlock upgrade plan openstack -i inventory.yaml --facts facts.json --json",
    )
    _target_options(p, facts=True)
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
        "run",
        help="show the plan, then execute it through the rollout engine",
        formatter_class=fmt,
        description="Compile and print the plan, ask, and execute it. Ctrl-C once finishes the "
        "hosts under way and pauses; twice interrupts them too (they are cleaned up). A killed "
        "run continues with `upgrade resume`.\n\n" + ABOUT,
        epilog="examples:\n  interlock upgrade run openstack -i inventory.yaml\n"
        "  interlock upgrade run my-recipe.yaml -i inventory.yaml --yes --events up.jsonl "
        "--metrics /var/lib/prometheus/node-exporter/upgrade.prom",
    )
    _target_options(p, facts=True)
    journal_option(p)
    output_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "resume",
        help="continue a paused or interrupted upgrade where it stopped",
        formatter_class=fmt,
        description="Continue the upgrade run (default: the latest unfinished one). Steps that "
        "were under way are checked (an install is done when the versions are there) and done "
        "again if needed; failed hosts get another attempt.",
        epilog="examples:\n  interlock upgrade resume\n"
        "  interlock upgrade resume 20250101-120000-ab12cd",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest unfinished upgrade)")
    journal_option(p)
    output_options(p)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser(
        "abort",
        help="end an upgrade run: hosts under way are cleaned up",
        formatter_class=fmt,
        description="A run being executed is told to stop through the journal; a paused or "
        "killed one is cleaned up here (backends enabled and services released on the hosts "
        "it left mid-way).",
        epilog="example:\n  interlock upgrade abort --yes",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest unfinished upgrade)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    journal_option(p)
    p.set_defaults(handler=cmd_abort)

    p = sub.add_parser(
        "status",
        help="an upgrade run's state, host by host (same as `rollout status`)",
        formatter_class=fmt,
        description="The run (default: the latest) with each host's state per batch, attempt "
        "and last step. Exit status 0 when complete, 3 while unfinished, 4 when aborted.",
        epilog="examples:\n  interlock upgrade status\n  interlock upgrade status --list",
    )
    p.add_argument("run", nargs="?", help="run id (default: the latest run)")
    p.add_argument(
        "--list", type=positive_count, nargs="?", const=20, metavar="N", help="the last N runs"
    )
    journal_option(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=cmd_status)
