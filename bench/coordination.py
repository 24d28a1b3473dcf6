"""What shared slots cost: acquire+release against a 3-member etcd, and a 50-host rollout's
overhead with etcd coordination versus the local backend (target: at most 5 % more).

Starts three etcd members on loopback (random ports, a temporary directory), so no lab and no
root are needed; kills them at the end. Baseline for the latency: one plain etcd put, measured
in the same run.

    .venv/bin/python bench/coordination.py [--cycles 300] [--actors 8] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from interlock.coordination.backend import Coordination, Group, LocalCoordination
from interlock.coordination.etcd import EtcdClient, parse_url
from interlock.coordination.etcd_slots import EtcdCoordination
from interlock.fleet.inventory import Host
from interlock.fleet.transport.local import LocalTransport
from interlock.lab.etcd import member_argv
from interlock.rollout.balancer import NoBalancer
from interlock.rollout.events import EventBus
from interlock.rollout.journal import Journal
from interlock.rollout.planner import build_plan
from interlock.rollout.runs import Session, execute, start_run
from interlock.rollout.schedule import Amount, GroupLimit, Schedule
from interlock.rollout.spec import ActionSpec, PostGateSpec, RolloutSpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def cluster(directory: Path) -> Iterator[str]:
    if shutil.which("etcd") is None:
        raise SystemExit("etcd is not installed (apt-get install etcd-server)")
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    members = []
    for index, (client, peer) in enumerate(ports):
        with (directory / f"m{index}.log").open("ab") as log:
            members.append(
                subprocess.Popen(
                    member_argv(
                        f"m{index}", directory / f"m{index}", "127.0.0.1", initial, client, peer
                    ),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for client, _ in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    url = f"http://127.0.0.1:{client}/health"
                    with urllib.request.urlopen(url, timeout=1) as answer:
                        if json.loads(answer.read()).get("health") == "true":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"etcd member on port {client} did not become healthy")
                time.sleep(0.1)
        yield "etcd://" + ",".join(f"127.0.0.1:{client}" for client, _ in ports)
    finally:
        for member in members:
            member.send_signal(signal.SIGKILL)
            member.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(url: str, cycles: int) -> tuple[list[float], list[float]]:
    """(plain put round trips, acquire+release cycles), in seconds."""
    client = EtcdClient(parse_url(url))
    puts = []
    for index in range(cycles):
        started = time.perf_counter()
        await client.put(f"/bench/put/{index % 10}", "x")
        puts.append(time.perf_counter() - started)
    await client.delete("/bench/", prefix=True)
    await client.close()
    coordination = EtcdCoordination(parse_url(url), ttl=10)
    await coordination.open("bench-latency", "bench", "latency")
    cycle = []
    for index in range(cycles):
        started = time.perf_counter()
        await coordination.acquire(f"h{index}", [Group("role=bench", 5)], lambda _: None)
        await coordination.release(f"h{index}")
        cycle.append(time.perf_counter() - started)
    await coordination.close()
    return puts, cycle


async def throughput(url: str, actors: int, seconds: float, limit: int) -> tuple[int, int]:
    """(cycles, most holders seen at once) for `actors` competing for `limit` slots."""
    holders = {"now": 0, "most": 0}
    done = 0
    deadline = time.monotonic() + seconds

    async def actor(number: int) -> None:
        nonlocal done
        coordination = EtcdCoordination(parse_url(url), ttl=10)
        await coordination.open(f"bench-{number}", "bench", "throughput")
        index = 0
        while time.monotonic() < deadline:
            host = f"a{number}-{index}"
            await coordination.acquire(host, [Group("role=contended", limit)], lambda _: None)
            holders["now"] += 1
            holders["most"] = max(holders["most"], holders["now"])
            await asyncio.sleep(0.001)  # held for a moment, so holders can overlap
            holders["now"] -= 1
            await coordination.release(host)
            done += 1
            index += 1
        await coordination.close()

    await asyncio.gather(*(actor(n) for n in range(actors)))
    return done, holders["most"]


async def rollout(directory: Path, coordination: Coordination, hosts: int) -> float:
    spec = RolloutSpec(
        transport="local",
        action=ActionSpec("command", argv=("true",)),
        schedule=Schedule(batch_size=Amount(10), limits=(GroupLimit("role", Amount(10)),)),
        post_gates=PostGateSpec(soak=1.0),
    )
    inventory = [
        Host(name=f"h{i:03d}", address="127.0.0.1", labels={"role": "compute"})
        for i in range(hosts)
    ]
    plan = build_plan(spec, inventory)
    with Journal(directory / "journal.sqlite") as journal:
        run = start_run(journal, plan, {"transport": "local"}, again=True)
        transport = LocalTransport()
        started = time.perf_counter()
        outcome = await execute(
            journal,
            run,
            EventBus(),
            session=Session(transport, NoBalancer(), transport),
            coordination=coordination,
        )
        elapsed = time.perf_counter() - started
    assert outcome.state == "complete", outcome
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp, cluster(Path(tmp)) as url:
        puts, cycles = asyncio.run(latency(url, args.cycles))
        done, most = asyncio.run(throughput(url, args.actors, args.seconds, 4))
        local: list[float] = []
        shared: list[float] = []
        for number in range(args.runs):
            with tempfile.TemporaryDirectory(dir=tmp) as one:
                local.append(asyncio.run(rollout(Path(one), LocalCoordination(), args.hosts)))
            with tempfile.TemporaryDirectory(dir=tmp) as one:
                etcd = EtcdCoordination(parse_url(url), ttl=10)
                shared.append(asyncio.run(rollout(Path(one), etcd, args.hosts)))
            print(f"rollout run {number + 1}: local {local[-1]:.3f} s, etcd {shared[-1]:.3f} s")
    ms = 1000.0
    print()
    print(f"3-member etcd on loopback: {url}")
    print(
        f"plain put (baseline):   median {statistics.median(puts) * ms:.2f} ms, "
        f"p95 {percentile(puts, 0.95) * ms:.2f} ms"
    )
    print(
        f"slot acquire+release:   median {statistics.median(cycles) * ms:.2f} ms, "
        f"p95 {percentile(cycles, 0.95) * ms:.2f} ms "
        f"({statistics.median(cycles) / statistics.median(puts):.1f} x a put)"
    )
    print(
        f"throughput: {args.actors} actors, 4 slots: {done / args.seconds:.0f} cycles/s "
        f"(most holders at once: {most})"
    )
    base, coordinated = statistics.median(local), statistics.median(shared)
    overhead = (coordinated - base) / base
    print(
        f"{args.hosts}-host rollout (batches of 10, 1 s soak, role=10), median of {args.runs}: "
        f"local {base:.3f} s, etcd {coordinated:.3f} s, overhead {overhead * 100:+.1f} %"
    )
    print(f"target overhead <= 5 %: {'OK' if overhead <= 0.05 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
