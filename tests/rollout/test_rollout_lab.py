"""`interlock rollout` on a lab: real sshd, invoke-rc.d, haproxy and HTTP APIs under load.

One lab for the module: lb1 in front of ctl1-ctl3 (the lab API, which cuts in-flight requests
when stopped, as many real daemons do), and cmp1-cmp9 in three AZs, each host in its own PID
namespace so one can crash. interlock is installed on every host with auto restarts off, so a
package-style `invoke-rc.d ... restart` is refused and queued, and the rollout applies it:

- with drain and health gates, a rolling restart of the three APIs under load loses no request;
- the same restart without drain loses some (the load generator sees them);
- the orchestrator killed at random points and resumed each time converges, restarting each API
  exactly once;
- compute hosts crashed mid-run are held to the failure budget and to one unavailable per AZ;
- what `rollout plan` shows is what `rollout run` executed.

Restarts are counted on the hosts themselves: the API's init script logs each action it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleet.lab_fleet import fleet_status, interlock, on_hosts, package_snapshot, rows, ssh_ok
from interlock.fleet.inventory import Host
from interlock.fleet.inventory_file import load_inventory
from interlock.fleet.transport.base import CommandResult, Transport
from interlock.fleet.transport.local import LocalTransport
from interlock.fleet.transport.ssh import SshTransport
from interlock.host.ledger import PACKAGE_UPDATE
from interlock.lab import processes as host_processes
from interlock.lab.lab import Lab
from interlock.lab.load import LoadGenerator, LoadReport
from interlock.lab.scratch import running_lab
from interlock.lab.spec import LB_PORT
from interlock.rollout.balancer import NoBalancer
from interlock.rollout.events import EventBus
from interlock.rollout.journal import Journal
from interlock.rollout.runs import Session, execute, plan_for, settings_for, start_run
from interlock.rollout.spec import ActionSpec, RolloutSpec
from rollout.lab_rollout import (
    CONTROLLERS,
    NOTHING_DEFERRED,
    RESTART_API,
    all_in_rotation,
    api_pid,
    backend_servers,
    count_actions,
    deny_restart,
    events_of_run,
    host_status,
    lifecycle_actions,
    read_events,
    rollout,
    run_status,
    step_order,
    wait_for,
)
from rollout.rollout_processes import Processes

pytestmark = pytest.mark.lab

COMPUTES = tuple(f"cmp{n}" for n in range(1, 10))
# 20 keep-alive clients against APIs that take 20 ms per request: about 700 req/s here.
LOAD_CLIENTS = 20
API_DELAY_MS = 20
MIN_RATE = 300.0
MIN_SECONDS = 10.0
# Load runs this long before the first drain and after the last enable.
LOAD_MARGIN = 1.0
EXIT_ABORTED = 4
DRAINED_STEPS = ["snapshot", "drain", "deferred", "restarted", "health", "soak", "enable"]
NAIVE_STEPS = ["snapshot", "deferred", "restarted", "health", "soak"]

# Chaos: every process (the run, then each resume) is killed at a random point of its progress:
# a short while after its Nth event (N random; the whole run writes about 45), or with N = 0 at a
# random moment while it starts (plan, journal, lock). Short gates keep twenty kills in budget.
KILLS = 20
MOST_EVENTS_BEFORE_KILL = 15
FINISH_TIMEOUT = 120.0
CHAOS_RESTART = (
    "--limit", "controllers",
    "--drain", "--drain-port", "8080",
    "--gate", "http://{address}:8080/health",
    "--gate-passes", "1",
    "--soak", "0",
    "--max-unavailable", "role=1",
)  # fmt: skip

# Crash: every compute at once as far as one unavailable per AZ allows (az1: cmp1 cmp4 cmp7, az2:
# cmp2 cmp5 cmp8, az3: cmp3 cmp6 cmp9: batches of three, one host per AZ); the first crash is
# within the failure budget, the second is over it.
FIRST_CRASH, SECOND_CRASH = "cmp1", "cmp5"
CRASH_RESTART = (
    "--limit", "computes",
    "--batch-size", "100%",
    "--max-unavailable", "az=1",
    "--failure-budget", "1",
    "--on-failure", "abort",
    "--gate", "tcp://{address}:22",
    "--soak", "2s",
)  # fmt: skip


@dataclass(frozen=True)
class LabFleet:
    lab: Lab
    inventory: Path
    journal: Path
    lb_address: str

    @property
    def url(self) -> str:
        return f"http://{self.lb_address}:{LB_PORT}/"


@dataclass(frozen=True)
class RollingRestart:
    """One `rollout run` over the controllers under load, and the hosts before and after."""

    result: subprocess.CompletedProcess[str]
    run: str
    load: LoadReport
    pids_before: dict[str, int]
    pids_after: dict[str, int]
    actions: dict[str, list[str]]  # start/stop/restart actions during the run, per host
    events: list[dict[str, Any]]
    queued_before: dict[str, Any]  # fleet status --json
    queued_after: dict[str, Any]
    plan_text: str
    plan_json: dict[str, Any]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")
    directory = tmp_path_factory.mktemp("rollout-lab")
    with running_lab(
        directory,
        hosts=4 + len(COMPUTES),
        controllers=len(CONTROLLERS),
        lbs=1,
        pid_namespace=True,
        api_delay_ms=API_DELAY_MS,
    ) as lab:
        before = host_processes.snapshot(lab.processes())
        yield lab
        before |= host_processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"


@pytest.fixture(scope="module")
def fleet(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> LabFleet:
    """interlock on every host (`fleet install --no-chain`), auto restarts off on controllers and
    computes, and the API's actions counted on the controllers."""
    package = package_snapshot(tmp_path_factory.mktemp("package"))
    installed = interlock(
        "fleet", "install", "-i", str(lab.inventory_path), "--no-chain", package=package
    )
    assert installed.returncode == 0, installed.stderr
    on_hosts([*CONTROLLERS, *COMPUTES], lambda h: ssh_ok(lab, h, "interlock auto-restarts off"))
    on_hosts(CONTROLLERS, lambda h: count_actions(lab, h))
    journal = tmp_path_factory.mktemp("journal") / "journal.sqlite"
    return LabFleet(lab, lab.inventory_path, journal, lab.state().host("lb1").address)


def restart_under_load(fleet: LabFleet, drain: str, events: Path) -> RollingRestart:
    """Queue an API restart on every controller, then roll it out under load through lb1."""
    lab = fleet.lab
    on_hosts(CONTROLLERS, lambda h: deny_restart(lab, h, "lab-api"))
    _, queued_before = fleet_status(fleet.inventory, "controllers")
    pids_before = on_hosts(CONTROLLERS, lambda h: api_pid(lab, h))
    counted = {h: len(lifecycle_actions(lab, h)) for h in CONTROLLERS}
    flags = ("-i", str(fleet.inventory), *RESTART_API, drain)
    plan_text = rollout("plan", *flags)
    plan_json = rollout("plan", *flags, "--json")
    assert plan_text.returncode == plan_json.returncode == 0, plan_text.stderr + plan_json.stderr
    argv = (*flags, "--yes", "--journal", str(fleet.journal), "--events", str(events))
    with LoadGenerator([fleet.url], concurrency=LOAD_CLIENTS) as load:
        time.sleep(LOAD_MARGIN)
        result = rollout("run", *argv, "--no-progress")
        time.sleep(LOAD_MARGIN)
    report = load.report()
    recorded = read_events(events)
    assert recorded, f"no events (exit {result.returncode}): {result.stderr[-3000:]}"
    _, queued_after = fleet_status(fleet.inventory, "controllers")
    return RollingRestart(
        result=result,
        run=recorded[0]["run"],
        load=report,
        pids_before=pids_before,
        pids_after=on_hosts(CONTROLLERS, lambda h: api_pid(lab, h)),
        actions={h: lifecycle_actions(lab, h)[counted[h] :] for h in CONTROLLERS},
        events=recorded,
        queued_before=queued_before,
        queued_after=queued_after,
        plan_text=plan_text.stdout,
        plan_json=json.loads(plan_json.stdout),
    )


@pytest.fixture(scope="module")
def drained(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> RollingRestart:
    """The zero-downtime restart: drain, 3 health passes, a 2 s soak, one controller at a time."""
    events = tmp_path_factory.mktemp("drained") / "run.jsonl"
    return restart_under_load(fleet, "--drain", events)


def check_load(report: LoadReport, record_property: Callable[[str, object], None]) -> None:
    """Enough load for long enough; the figures go to the test report (e.g. --junitxml)."""
    record_property("requests_per_second", round(report.requests_per_second))
    record_property("load_seconds", round(report.duration, 1))
    record_property("requests", report.sent)
    record_property("failed", report.failed)
    record_property("failures", dict(report.failures))
    assert report.duration >= MIN_SECONDS, report
    assert report.requests_per_second >= MIN_RATE, report
    assert report.ok > 0, report


def test_rolling_restart_with_drain_loses_no_request(
    fleet: LabFleet, drained: RollingRestart, record_property: Callable[[str, object], None]
) -> None:
    assert drained.result.returncode == 0, drained.result.stderr[-3000:]
    check_load(drained.load, record_property)
    assert drained.load.failed == 0, drained.load.failures
    assert rows(drained.queued_before) == {
        (host, "lab-api", "restart", PACKAGE_UPDATE, "interlock:interlock") for host in CONTROLLERS
    }
    assert rows(drained.queued_after) == set()
    assert drained.queued_after["totals"]["hosts_with_pending"] == 0
    for host in CONTROLLERS:
        assert drained.pids_after[host] != drained.pids_before[host], host
        assert drained.actions[host] == ["restart"], host
        assert host_status(fleet.lab, host) == (0, NOTHING_DEFERRED)
        assert step_order(drained.events, host) == DRAINED_STEPS
        (drain,) = (
            e
            for e in drained.events
            if e["kind"] == "step-finished" and e.get("host") == host and e["step"] == "drain"
        )
        assert drain["state"] == "done"
        assert drain["detail"].startswith(f"drained lb1:api/{host} ("), drain
    servers = backend_servers(fleet.lb_address)
    assert set(servers) == set(CONTROLLERS)
    assert all_in_rotation(servers), servers
    status = run_status(fleet.journal, drained.run)
    assert status["state"] == "complete"
    assert {h["host"]: h["state"] for h in status["hosts"]} == dict.fromkeys(CONTROLLERS, "done")


def test_plan_is_what_run_executed(fleet: LabFleet, drained: RollingRestart) -> None:
    assert drained.result.returncode == 0, drained.result.stderr[-3000:]
    # `run` prints the plan it executes first: the same text as `plan`.
    assert drained.result.stdout.startswith(drained.plan_text.rstrip("\n") + "\n\n")
    with Journal(fleet.journal) as journal:
        stored = journal.run(drained.run)
        log = journal.log(drained.run)
    assert json.loads(stored.plan_json) == drained.plan_json
    planned = [
        (host["host"]["name"], [step["id"] for step in host["steps"]])
        for batch in drained.plan_json["batches"]
        for host in batch["hosts"]
    ]
    started: dict[str, list[str]] = {}
    for entry in log:
        if entry.state == "started":
            started.setdefault(entry.host, []).append(entry.step)
    assert list(started.items()) == planned


def test_the_same_restart_without_drain_fails_requests(
    fleet: LabFleet, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    naive = restart_under_load(fleet, "--no-drain", tmp_path / "run.jsonl")

    assert naive.result.returncode == 0, naive.result.stderr[-3000:]
    check_load(naive.load, record_property)
    assert naive.load.failed > 0, naive.load
    for host in CONTROLLERS:
        assert naive.pids_after[host] != naive.pids_before[host], host
        assert naive.actions[host] == ["restart"], host
        assert step_order(naive.events, host) == NAIVE_STEPS
    wait_for(lambda: all_in_rotation(backend_servers(fleet.lb_address)), "every server UP")


def run_ids(journal: Path) -> set[str]:
    with Journal(journal) as opened:
        return {run.id for run in opened.runs(1000)}


def run_state(journal: Path, run: str) -> str:
    with Journal(journal) as opened:
        return opened.run(run).state


def hosts_under_way(journal: Path, run: str) -> bool:
    with Journal(journal) as opened:
        return any(record.state == "running" for record in opened.hosts(run))


def steps_interrupted(journal: Path, run: str) -> int:
    """Steps a kill landed in: started twice in one attempt, or found done by the resume."""
    with Journal(journal) as opened:
        log = opened.log(run)
    starts: dict[tuple[str, str, int], int] = {}
    found = 0
    for entry in log:
        if entry.state == "started":
            key = (entry.host, entry.step, entry.attempt)
            starts[key] = starts.get(key, 0) + 1
        if entry.detail == "found done when resuming":
            found += 1
    return found + sum(1 for count in starts.values() if count > 1)


def kill_somewhere(process: subprocess.Popen[bytes], events: Path, rng: random.Random) -> bool:
    """SIGKILL the rollout at a random point of its progress; False if it ended first."""
    seen = event_count(events)
    wanted = rng.randint(0, MOST_EVENTS_BEFORE_KILL)
    if wanted:
        deadline = time.monotonic() + FINISH_TIMEOUT
        while event_count(events) < seen + wanted and process.poll() is None:
            assert time.monotonic() < deadline, "the rollout made no progress"
            time.sleep(0.01)
        delay = rng.uniform(0.0, 0.3)
    else:
        delay = rng.uniform(0.1, 1.2)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False


def event_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_killed_orchestrator_resumes_and_restarts_each_api_once(
    fleet: LabFleet,
    processes: Processes,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    lab = fleet.lab
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    journal = tmp_path / "journal.sqlite"
    events = tmp_path / "run.jsonl"
    common = ("--journal", str(journal), "--events", str(events), "--yes")
    start = ("run", "-i", str(fleet.inventory), *CHAOS_RESTART, *common, "--no-progress")
    kills = rounds = interrupted = mid_host = 0
    while kills < KILLS:
        rounds += 1
        where = f"seed {seed}, round {rounds}"
        on_hosts(CONTROLLERS, lambda h: deny_restart(lab, h, "lab-api"))
        pids = on_hosts(CONTROLLERS, lambda h: api_pid(lab, h))
        counted = {h: len(lifecycle_actions(lab, h)) for h in CONTROLLERS}
        known = run_ids(journal)
        argv: tuple[str, ...] = start
        log = f"round{rounds}.log"
        code: int | None = None  # of the last process that was not killed
        while True:
            process = processes.rollout(*argv, log=log)
            if kills >= KILLS:
                code = process.wait(timeout=FINISH_TIMEOUT)
                break
            if not kill_somewhere(process, events, rng):
                code = process.returncode
                break
            kills += 1
            new = run_ids(journal) - known
            if not new:
                argv = start  # killed before the run was recorded: nothing to resume
                continue
            if run_state(journal, *new) == "complete":
                break  # killed after the run was recorded complete
            if hosts_under_way(journal, *new):
                mid_host += 1
            argv = ("resume", *new, *common, "--no-progress")
        output = (tmp_path / log).read_text(errors="replace")[-3000:]
        assert code in (0, None), f"{where}: exit {code}\n{output}"
        (run,) = run_ids(journal) - known
        assert run_state(journal, run) == "complete", f"{where}\n{output}"
        for host in CONTROLLERS:
            assert lifecycle_actions(lab, host)[counted[host] :] == ["restart"], f"{where}: {host}"
        after = on_hosts(CONTROLLERS, lambda h: api_pid(lab, h))
        assert all(after[h] != pids[h] for h in CONTROLLERS), f"{where}: {pids} → {after}"
        statuses = on_hosts(CONTROLLERS, lambda h: host_status(lab, h))
        assert statuses == dict.fromkeys(CONTROLLERS, (0, NOTHING_DEFERRED)), where
        servers = backend_servers(fleet.lb_address)
        assert all_in_rotation(servers), f"{where}: {servers}"
        interrupted += steps_interrupted(journal, run)
    record_property("seed", seed)
    record_property("kills", kills)
    record_property("rollouts", rounds)
    record_property("kills_with_a_host_under_way", mid_host)
    record_property("kills_inside_a_step", interrupted)
    assert kills == KILLS
    # Kills left hosts half-way through their steps for the resume to finish.
    assert mid_host > 0


def wait_for_event(
    path: Path, process: subprocess.Popen[bytes], wanted: Callable[[dict[str, Any]], bool]
) -> None:
    deadline = time.monotonic() + 60
    while not any(wanted(event) for event in read_events(path)):
        assert process.poll() is None, f"the rollout ended ({process.returncode}) first"
        assert time.monotonic() < deadline, "timed out waiting for an event"
        time.sleep(0.02)


def soak_started(host: str) -> Callable[[dict[str, Any]], bool]:
    def wanted(event: dict[str, Any]) -> bool:
        return (
            event["kind"] == "step-started"
            and event.get("host") == host
            and event.get("step") == "soak"
        )

    return wanted


def crash(lab: Lab, host: str) -> None:
    """SIGKILL the host's sshd, its PID 1: every process of the host goes with it."""
    pid = lab.state().host(host).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not host_processes.alive(pid), f"{host} to go down")


def check_one_unavailable_per_az(events: list[dict[str, Any]], az: dict[str, str]) -> int:
    """Replay the run: at no moment more than one host of an AZ under way or failed. Returns
    the most hosts under way at once."""
    running: set[str] = set()
    failed: set[str] = set()
    most = 0
    for event in events:
        if event["kind"] == "host-started":
            running.add(event["host"])
        elif event["kind"] == "host-finished":
            running.discard(event["host"])
            if event["state"] == "failed":
                failed.add(event["host"])
        else:
            continue
        for zone in set(az.values()):
            down = sorted(h for h in running | failed if az[h] == zone)
            assert len(down) <= 1, f"{zone}: {down} unavailable at once ({event})"
        most = max(most, len(running))
    return most


def test_crashed_hosts_are_held_to_failure_budget_and_az_limit(
    fleet: LabFleet, processes: Processes, tmp_path: Path
) -> None:
    lab = fleet.lab
    az = {h.name: h.labels["az"] for h in lab.state().hosts if h.role == "compute"}
    assert sorted(az) == sorted(COMPUTES)
    on_hosts(COMPUTES, lambda h: deny_restart(lab, h, "cron"))
    crons = on_hosts(COMPUTES, lambda h: ssh_ok(lab, h, "cat /run/crond.pid").strip())
    events = tmp_path / "run.jsonl"
    journal = tmp_path / "journal.sqlite"
    process = processes.rollout(
        "run", "-i", str(fleet.inventory), *CRASH_RESTART,
        "--yes", "--journal", str(journal), "--events", str(events), "--no-progress",
    )  # fmt: skip

    for victim in (FIRST_CRASH, SECOND_CRASH):
        wait_for_event(events, process, soak_started(victim))
        crash(lab, victim)
    code = process.wait(timeout=FINISH_TIMEOUT)

    output = (tmp_path / "rollout.log").read_text(errors="replace")[-3000:]
    assert code == EXIT_ABORTED, output
    run = read_events(events)[0]["run"]
    recorded = events_of_run(events, run)
    status = run_status(journal, run)
    assert status["state"] == "aborted"
    assert status["reason"].startswith("2 host(s) failed, over the failure budget of 1"), status
    states = {h["host"]: h for h in status["hosts"]}
    for victim in (FIRST_CRASH, SECOND_CRASH):
        address = lab.state().host(victim).address
        assert states[victim]["state"] == "failed"
        assert states[victim]["detail"].startswith(
            f"soak: unhealthy after soaking 2 s: TCP connect {address}:22"
        ), states[victim]
    # Never started: cmp4 shares az1 with the first crash; the rest come after the abort.
    untouched = {"cmp4", "cmp7", "cmp8", "cmp9"}
    started = [e["host"] for e in recorded if e["kind"] == "host-started"]
    assert untouched.isdisjoint(started), started
    assert {h for h, s in states.items() if s["state"] == "pending"} == untouched
    assert {states[h]["state"] for h in ("cmp2", "cmp3")} == {"done"}
    assert states["cmp6"]["state"] in ("done", "failed")  # under way when the run aborted
    # Nothing starts once the budget is spent.
    over = next(
        i
        for i, e in enumerate(recorded)
        if e["kind"] == "host-finished" and e["host"] == SECOND_CRASH
    )
    assert not [e for e in recorded[over:] if e["kind"] == "host-started"]
    # Three AZs, three hosts at once, never two of one AZ (a failed host stays unavailable).
    assert check_one_unavailable_per_az(recorded, az) == 3
    for host in untouched:
        assert ssh_ok(lab, host, "cat /run/crond.pid").strip() == crons[host], host
        assert host_status(lab, host) == (1, "Services queued for restart: cron"), host
    for host in (h for h, s in states.items() if s["state"] == "done"):
        assert ssh_ok(lab, host, "cat /run/crond.pid").strip() != crons[host], host
        assert host_status(lab, host) == (0, NOTHING_DEFERRED), host


@dataclass
class CountingTransport(Transport):
    """The SSH transport, counting the sessions (one per command) it opens to each host."""

    inner: Transport
    sessions: dict[str, list[str]] = field(default_factory=dict)

    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        # A fact's script is named by its $0 (`sh -c SCRIPT NAME ...`); other commands by argv.
        shell = list(argv[:2]) in (["sh", "-c"], ["bash", "-c"])
        what = argv[3] if shell and len(argv) > 3 else " ".join(argv[:3])
        self.sessions.setdefault(host.name, []).append(what)
        return await self.inner.run(
            host, argv, input=input, timeout=timeout, remote_timeout=remote_timeout
        )

    async def put_file(self, host: Host, data: bytes, path: str, mode: int = 0o644) -> None:
        await self.inner.put_file(host, data, path, mode)

    async def get_file(self, host: Host, path: str) -> bytes:
        return await self.inner.get_file(host, path)

    async def close(self) -> None:
        await self.inner.close()


def test_a_deferred_rollout_reads_each_ledger_once_per_attempt(
    fleet: LabFleet, tmp_path: Path
) -> None:
    """The plan comes from the fleet status and shows each host's debt; the run then reads each
    host's ledger once (counted on the transport), and a host that owes nothing is not touched."""
    lab = fleet.lab
    owing, clean = CONTROLLERS[:2], CONTROLLERS[2]
    on_hosts(CONTROLLERS, lambda h: ssh_ok(lab, h, "interlock check >/dev/null || true"))
    on_hosts(owing, lambda h: deny_restart(lab, h, "lab-api"))
    pids_before = on_hosts(owing, lambda h: api_pid(lab, h))
    inventory = load_inventory(fleet.inventory)
    spec = RolloutSpec(action=ActionSpec("deferred", "interlock"), limit="controllers")
    plan = plan_for(spec, inventory)
    debts = {hp.host.name: hp.debt for hp in plan.hosts}
    assert {name: [d.service for d in debt or ()] for name, debt in debts.items()} == {
        **{host: ["lab-api"] for host in owing},
        clean: [],
    }
    assert "     owes lab-api since " in str(plan)
    counting = CountingTransport(SshTransport.for_inventory(inventory))
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = start_run(journal, plan, settings_for(spec, inventory))
        session = Session(counting, NoBalancer(), LocalTransport())
        outcome = asyncio.run(execute(journal, run, EventBus(), session=session))
        assert outcome.state == "complete", outcome
        details = {record.host: record.detail for record in journal.hosts(run.id)}
    for host in owing:
        sessions = counting.sessions[host]
        assert sessions.count("ledger") == 1, sessions
        assert sessions[0] == "ledger"
        assert "interlock check --json" not in sessions  # the read found nothing paid since
        assert sessions.count("interlock restart --deferred-only") == 1, sessions
        assert set(sessions) <= {"ledger", "interlock restart --deferred-only", "service-state"}
        assert api_pid(lab, host) != pids_before[host]
    assert counting.sessions[clean] == ["ledger"]
    assert details[clean] == "nothing to do"
