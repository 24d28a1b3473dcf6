"""Slots on a real etcd (one member on loopback): the semaphore's limit across processes, what
other tools see, operator release, and the errors an operator gets."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordination.local_etcd import etcdctl
from interlock.cli.runs import start_recorded_run
from interlock.coordination.backend import CoordinationError, Group
from interlock.coordination.etcd import EtcdUnavailable, parse_url
from interlock.coordination.etcd_slots import EtcdCoordination
from interlock.errors import UsageError
from interlock.rollout.journal import Journal
from interlock.rollout.states import RunKind
from rollout.rollout_fakes import fleet, make_plan
from rollout.rollout_processes import CLI

WORKER = Path(__file__).with_name("slot_worker.py")


def interlock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_many_processes_never_hold_more_than_the_limit(etcd_url: str, tmp_path: Path) -> None:
    (tmp_path / "held").mkdir()
    limit, actors, rounds = 2, 6, 12
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                etcd_url,
                str(tmp_path),
                f"actor{n}",
                str(rounds),
                str(limit),
            ],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for n in range(actors)
    ]
    try:
        (tmp_path / "go").touch()
        codes = [worker.wait(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert codes == [0] * actors
    counts = [int(line) for line in (tmp_path / "counts").read_text().split()]
    assert len(counts) == actors * rounds
    # Never more holders at once than the limit, and the limit was really contended for.
    assert max(counts) <= limit
    assert max(counts) == limit
    assert etcdctl(etcd_url, "get", "--prefix", "/interlock/slots/role=shared/") == ""


def test_holdings_are_shared_listed_and_released_by_an_operator(
    etcd_url: str, tmp_path: Path
) -> None:
    async def hold() -> EtcdCoordination:
        coordination = EtcdCoordination(parse_url(etcd_url), ttl=30)
        await coordination.open("run-a", "rollout", "restart the API")
        await coordination.acquire("cmp1", [Group("role=compute", 1)], lambda _: None)
        return coordination

    loop = asyncio.new_event_loop()
    try:
        coordination = loop.run_until_complete(hold())
        # etcdctl sees the slot, with its holder, under the holder's lease.
        raw = etcdctl(
            etcd_url, "get", "/interlock/slots/role=compute/run-a@cmp1", "--print-value-only"
        )
        holding = json.loads(raw)
        assert (holding["host"], holding["run"], holding["kind"]) == ("cmp1", "run-a", "rollout")
        assert etcdctl(etcd_url, "get", "/interlock/hosts/cmp1", "--print-value-only").strip() == (
            "run-a@cmp1"
        )
        listed = interlock("slots", "list", "--coordination", etcd_url, "--json")
        assert listed.returncode == 0, listed.stderr
        [entry] = json.loads(listed.stdout)
        assert (entry["group"], entry["holder"], entry["what"], entry["live"]) == (
            "role=compute", "run-a@cmp1", "restart the API", True,
        )  # fmt: skip
        # Releasing a slot by a name that does not hold it: an error naming the real holder.
        journal = tmp_path / "journal.sqlite"
        wrong = interlock(
            "slots", "release", "role=compute", "run-b@cmp1", "--coordination", etcd_url,
            "--journal", str(journal),
        )  # fmt: skip
        assert wrong.returncode == 1
        assert wrong.stderr.strip() == (
            "interlock: run-b@cmp1 holds no slot in group role=compute; its holders: run-a@cmp1"
        )
        released = interlock(
            "slots", "release", "role=compute", "run-a@cmp1", "--coordination", etcd_url,
            "--journal", str(journal), "--reason", "holder is gone",
        )  # fmt: skip
        assert released.returncode == 0, released.stderr
        assert "released run-a@cmp1's slot in role=compute (host cmp1, run run-a" in released.stdout
        assert etcdctl(etcd_url, "get", "--prefix", "/interlock/slots/") == ""
        assert etcdctl(etcd_url, "get", "/interlock/hosts/cmp1") == ""
        # Recorded in etcd and next to the operator's journal.
        records = etcdctl(etcd_url, "get", "--prefix", "/interlock/released/", "--print-value-only")
        assert json.loads(records.split("\n")[0])["reason"] == "holder is gone"
        [line] = (tmp_path / "coordination.log").read_text().splitlines()
        assert json.loads(line)["holder"] == "run-a@cmp1"
        # The holder still believes it holds the slot: its release is harmless.
        loop.run_until_complete(coordination.release("cmp1"))
        loop.run_until_complete(coordination.close())
    finally:
        loop.close()
    assert etcdctl(etcd_url, "get", "--prefix", "/interlock/runs/") == ""


def test_a_resumed_run_takes_its_own_slot_back(etcd_url: str) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        first = EtcdCoordination(parse_url(etcd_url), ttl=30)
        await first.open("run-r", "rollout", "x")
        await first.acquire("cmp2", [Group("role=compute", 1)], lambda _: None)
        # The same run in a new process (its old lease is still alive): no wait for itself.
        again = EtcdCoordination(parse_url(etcd_url), ttl=30)
        await again.open("run-r", "rollout", "x")
        waits: list[str] = []
        await again.acquire("cmp2", [Group("role=compute", 1)], waits.append)
        other = EtcdCoordination(parse_url(etcd_url), ttl=30)
        await other.open("run-s", "rollout", "y")
        blocked: list[str] = []
        attempt = asyncio.ensure_future(
            other.acquire("cmp3", [Group("role=compute", 1)], blocked.append)
        )
        await asyncio.sleep(1.0)
        assert not attempt.done()
        await again.release("cmp2")
        await asyncio.wait_for(attempt, 10)
        for coordination in (first, again, other):
            await coordination.release("cmp3")
            await coordination.close()
        return waits, blocked

    waits, blocked = asyncio.run(scenario())
    assert waits == []
    assert blocked and blocked[0] == (
        "waiting for a slot: role=compute: 1 of 1 slot(s) taken (run-r@cmp2)"
    )


def test_errors_an_operator_gets(etcd_url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"expected etcd://HOST:PORT"):
        parse_url("http://127.0.0.1:2379")
    with pytest.raises(UsageError, match=r"the only option is ttl=SECONDS"):
        parse_url("etcd://127.0.0.1:2379?ttl=0")
    assert parse_url("etcd://a,b:2380?ttl=5").endpoints[0].port == 2379

    async def unreachable() -> None:
        coordination = EtcdCoordination(parse_url("etcd://127.0.0.1:1"), ttl=5)
        await coordination.open("run-x", "rollout", "x")

    with pytest.raises(CoordinationError) as error:
        asyncio.run(unreachable())
    assert str(error.value) == (
        "coordination etcd://127.0.0.1:1: no etcd member answered (127.0.0.1:1: connection refused)"
    )
    assert isinstance(EtcdUnavailable("x"), Exception)

    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  h1: {address: 127.0.0.1, labels: {role: compute}}\n")
    base = ("rollout", "run", "-i", str(inventory), "--transport", "local", "--command", "true",
            "--no-restarted-gate", "--yes", "--no-progress")  # fmt: skip
    wrong = interlock(*base, "--coordination", "etcd:/127.0.0.1:2379", env=env)
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines() == [
        "interlock: coordination 'etcd:/127.0.0.1:2379': expected "
        "etcd://HOST:PORT[,HOST:PORT…][?ttl=SECONDS] (or etcds:// for TLS), or `local`"
    ]
    down = interlock(*base, "--coordination", "etcd://127.0.0.1:1", env=env)
    assert down.returncode == 1
    assert down.stderr.splitlines()[-1] == (
        "interlock: coordination etcd://127.0.0.1:1: no etcd member answered "
        "(127.0.0.1:1: connection refused)"
    )
    # Nothing was started: no run in the journal, no lease on the host.
    journal = tmp_path / "state" / "interlock" / "journal.sqlite"
    assert (
        not journal.exists()
        or "no run" in interlock("rollout", "status", "--journal", str(journal)).stderr
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("action: {command: [true]}\ncoordination: etcd://\n")
    bad_spec = interlock("rollout", "plan", "-i", str(inventory), "--spec", str(spec))
    assert bad_spec.returncode == 1
    assert bad_spec.stderr.strip() == (
        f"interlock: {spec} line 2: coordination 'etcd://': give only host:port pairs after etcd://"
    )
    # With etcd up, the same run goes through and leaves no slot behind.
    ok = interlock(*base, "--coordination", etcd_url, env=env)
    assert ok.returncode == 0, ok.stderr
    assert etcdctl(etcd_url, "get", "--prefix", "/interlock/slots/") == ""


@pytest.mark.parametrize("kind", [RunKind.ROLLOUT, RunKind.UPGRADE])
def test_a_run_keeps_the_coordination_it_was_started_with(
    etcd_url: str, tmp_path: Path, kind: RunKind
) -> None:
    """`rollout run` and `upgrade run` record the --coordination they were given, so a `resume`
    or an `abort` shares the same budget without being told again; an unreachable store
    refuses before any run exists."""
    args = argparse.Namespace(coordination=etcd_url, json=True)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = start_recorded_run(args, journal, make_plan(fleet(2)), {}, kind=kind)
        assert journal.run(run.id).settings["coordination"] == etcd_url
        assert journal.run(run.id).kind == kind
        down = argparse.Namespace(coordination="etcd://127.0.0.1:1", json=True)
        with pytest.raises(CoordinationError):
            start_recorded_run(down, journal, make_plan(fleet(2)), {}, kind=kind, again=True)
        assert [r.id for r in journal.runs()] == [run.id]
