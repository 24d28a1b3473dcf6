"""Orchestration overhead of the rollout engine: 50 hosts, batches of 10, a 1 s soak each.

The ideal is the sum of the waits the plan makes mandatory: one soak per batch, since a batch's
hosts soak at the same time (5 batches x 1 s = 5 s). Everything above it is the engine: journal
transactions (WAL; each step's start synced before it acts, shared by the steps that start
together), events, process spawns of the trivial action, scheduling. Target: total / ideal <= 1.03.

For reference, the same work without the engine (spawn `true` for 10 hosts at once, sleep 1 s,
5 times) is measured in the same run.

    .venv/bin/python bench/rollout_overhead.py [--hosts 50] [--batch 10] [--soak 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from interlock.fleet.inventory import Host
from interlock.fleet.transport.local import LocalTransport
from interlock.rollout.balancer import NoBalancer
from interlock.rollout.events import Event, EventBus
from interlock.rollout.journal import Journal
from interlock.rollout.planner import build_plan
from interlock.rollout.runs import Session, execute, start_run
from interlock.rollout.schedule import Amount, Schedule
from interlock.rollout.spec import ActionSpec, PostGateSpec, RolloutSpec

TARGET = 1.03


def spec(batch: int, soak: float) -> RolloutSpec:
    return RolloutSpec(
        transport="local",
        action=ActionSpec("command", argv=("true",)),
        schedule=Schedule(batch_size=Amount(batch)),
        post_gates=PostGateSpec(soak=soak),
    )


async def engine_run(
    hosts: list[Host], batch: int, soak: float, directory: Path
) -> tuple[float, int]:
    plan = build_plan(spec(batch, soak), hosts)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    with Journal(directory / "journal.sqlite") as journal:
        run = start_run(journal, plan, {"transport": "local"}, again=True)
        transport = LocalTransport()
        started = time.perf_counter()
        outcome = await execute(
            journal, run, bus, session=Session(transport, NoBalancer(), transport)
        )
        elapsed = time.perf_counter() - started
        assert outcome.state == "complete", outcome
        commits = len(journal.log(run.id))
    return elapsed, commits


async def bare_run(hosts: list[Host], batch: int, soak: float) -> float:
    """The same spawns and waits with nothing else: no journal, no events, no scheduling."""
    transport = LocalTransport()
    started = time.perf_counter()
    for start in range(0, len(hosts), batch):
        chunk = hosts[start : start + batch]

        async def one(host: Host) -> None:
            await transport.run(host, ["true"])
            await asyncio.sleep(soak)

        await asyncio.gather(*(one(host) for host in chunk))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--soak", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    hosts = [Host(name=f"h{i:03d}", address="127.0.0.1") for i in range(args.hosts)]
    batches = -(-args.hosts // args.batch)
    ideal = batches * args.soak
    totals: list[float] = []
    bares: list[float] = []
    commits = 0
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="interlock-bench-") as directory:
            elapsed, commits = asyncio.run(
                engine_run(hosts, args.batch, args.soak, Path(directory))
            )
        totals.append(elapsed)
        bares.append(asyncio.run(bare_run(hosts, args.batch, args.soak)))
        print(f"run {number + 1}: engine {elapsed:.3f} s, bare {bares[-1]:.3f} s")
    total = statistics.median(totals)
    bare = statistics.median(bares)
    print()
    print(f"hosts {args.hosts}, batches of {args.batch} ({batches}), soak {args.soak:g} s")
    print(f"ideal (sum of mandatory waits):   {ideal:.3f} s")
    print(f"bare spawns + waits, no engine:   {bare:.3f} s  ({bare / ideal:.3f} x ideal)")
    print(f"rollout engine (median of {args.runs}):  {total:.3f} s  ({total / ideal:.3f} x ideal)")
    print(f"engine overhead per batch:        {(total - ideal) / batches * 1000:.1f} ms")
    print(f"journal state changes per run:    {commits}")
    verdict = "OK" if total / ideal <= TARGET else "OVER TARGET"
    print(f"target total / ideal <= {TARGET}:     {verdict}")


if __name__ == "__main__":
    main()
