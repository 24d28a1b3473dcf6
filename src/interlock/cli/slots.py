"""`interlock slots list|release`: the disruption slots every actor holds in etcd."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from interlock.cli.output import emit_json, table
from interlock.errors import UsageError

ENV = "INTERLOCK_COORDINATION"
RELEASE_LOG = "coordination.log"
FIELD_CAP = 200  # characters of any value another actor wrote that we show


def coordination_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--coordination",
        metavar="URL",
        default=os.environ.get(ENV),
        help="share disruption slots with other operators: etcd://HOST:PORT[,HOST:PORT…]"
        f"[?ttl=SECONDS] (default: ${ENV}, else the spec's, else local)",
    )


def chosen_coordination(args: argparse.Namespace) -> Any:
    """The coordination the flag (or the environment) names, validated; None: the run's own."""
    text = getattr(args, "coordination", None)
    if not text:
        return None
    from interlock.coordination.selection import check_coordination, open_coordination

    return open_coordination(check_coordination(text))


def check_reachable(text: str | None) -> None:
    """CoordinationError (one line) unless the store named answers; local always does."""
    if not text or text == "local":
        return

    async def ask(store: Any) -> None:
        await store.holdings()

    from interlock.coordination.selection import check_coordination

    asyncio.run(_with_store(check_coordination(text), ask))


def _store(text: str) -> Any:
    from interlock.coordination.etcd import EtcdClient, parse_url
    from interlock.coordination.etcd_slots import SlotStore

    return SlotStore(EtcdClient(parse_url(text)))


async def _with_store(text: str, work: Any) -> Any:
    from interlock.coordination.backend import CoordinationError
    from interlock.coordination.etcd import EtcdError, EtcdUnavailable

    store = _store(text)
    try:
        return await work(store)
    except (EtcdUnavailable, EtcdError) as exc:
        raise CoordinationError(f"coordination {text}: {exc}") from None
    finally:
        await store.client.close()


def shared_holdings(text: str) -> list[dict[str, Any]]:
    """Every actor's slots, with the run each belongs to, as plain data."""
    if text == "local":
        return []

    async def gather(store: Any) -> list[dict[str, Any]]:
        holdings = await store.holdings()
        runs = await store.runs()
        return [
            {
                "group": h.group,
                "limit": h.limit,
                "holder": h.holder,
                "host": h.host,
                "run": h.run,
                "kind": h.kind,
                "what": str(runs.get(h.run, {}).get("what", ""))[:FIELD_CAP],
                "actor": h.actor,
                "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.since)),
                "live": h.run in runs or h.kind == "fleetlock",
            }
            for h in holdings
        ]

    result: list[dict[str, Any]] = asyncio.run(_with_store(text, gather))
    return result


def print_holdings(holdings: list[dict[str, Any]]) -> None:
    """Values come from other actors through etcd: data, shown as text, never as markup."""
    from rich.markup import escape

    if not holdings:
        print("no disruption slots held by anyone")
        return

    def cell(value: object) -> str:
        return escape(str(value)[:FIELD_CAP])

    table(
        "disruption slots held",
        ["group", "limit", "holder (run@host)", "kind", "actor", "since", "live"],
        [
            (
                cell(h["group"]),
                h["limit"],
                cell(h["holder"]),
                cell(h["kind"]),
                cell(h["actor"]),
                h["since"],
                "yes" if h["live"] else "no (its run is gone)",
            )
            for h in holdings
        ],
    )


def cmd_list(args: argparse.Namespace) -> int:
    holdings = shared_holdings(_required(args))
    if args.json:
        emit_json(holdings)
    else:
        print_holdings(holdings)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    text = _required(args)
    by = _operator()

    async def release(store: Any) -> Any:
        return await store.force_release(args.group, args.holder, by, args.reason)

    holding = asyncio.run(_with_store(text, release))
    record = {
        "event": "slot-released",
        "group": args.group,
        "holder": args.holder,
        "host": holding.host,
        "run": holding.run,
        "by": by,
        "reason": args.reason,
        "at": time.time(),
        "coordination": text,
    }
    _log_locally(args.journal, record)
    print(
        f"released {args.holder}'s slot in {args.group} (host {holding.host}, run {holding.run}, "
        f"held since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holding.since))})"
    )
    return 0


def _required(args: argparse.Namespace) -> str:
    text: str | None = args.coordination
    if not text or text == "local":
        raise UsageError(
            "slots live in etcd: give --coordination etcd://HOST:PORT,… "
            f"(or set ${ENV}); a local run has no shared slots"
        )
    from interlock.coordination.selection import check_coordination

    return check_coordination(text)


def _operator() -> str:
    from interlock.coordination.etcd_slots import actor_name

    return actor_name()


def _log_locally(journal: str | None, record: dict[str, Any]) -> None:
    """Next to the operator's journal: one JSON line per explicit release, appended."""
    from pathlib import Path

    from interlock.rollout.journal import default_journal_path

    base = Path(journal).parent if journal else default_journal_path().parent
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(base / RELEASE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser(
        "slots",
        help="disruption slots shared through etcd: who holds what, release a dead holder's",
        formatter_class=fmt,
        description="Every actor (rollouts, upgrades, FleetLock hosts) that disrupts a host "
        "first takes a slot in each group the host is limited in; a group's slots never exceed "
        "its limit. Slots of a running actor hang on its etcd lease and vanish when it dies.",
    )
    sub = group.add_subparsers(dest="slots_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "list",
        help="every held slot: group, host, run, kind, actor, since",
        epilog="example:\n  interlock slots list --coordination etcd://10.0.0.1:2379",
        formatter_class=fmt,
    )
    coordination_option(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=cmd_list)
    p = sub.add_parser(
        "release",
        help="free a holder's slot explicitly (recorded in etcd and next to the journal)",
        description="For a holder that will never release: a FleetLock host that died before "
        "steady-state, a run abandoned while etcd kept its slot. The holder is named exactly "
        "as `slots list` shows it (RUN@HOST).",
        epilog="example:\n  interlock slots release role=compute 20250101-120000-ab12cd@cmp3 "
        "--reason 'host replaced' --coordination etcd://10.0.0.1:2379",
        formatter_class=fmt,
    )
    p.add_argument("group", help="the group, as `slots list` shows it (e.g. role=compute)")
    p.add_argument("holder", help="the holder, as `slots list` shows it (RUN@HOST)")
    p.add_argument("--reason", default="released by the operator", help="recorded with it")
    p.add_argument("--journal", metavar="PATH", help="the release is logged next to it")
    coordination_option(p)
    p.set_defaults(handler=cmd_release)
