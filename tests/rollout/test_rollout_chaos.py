"""Chaos: a real rollout process killed with SIGKILL at random moments, resumed each time.

Twenty "hosts" are directories; each host's steps are real commands taking 50-200 ms: drain and
mask (marker files, undone by enable and unmask), then the work, which appends a line to a
counter file. After any number of kills and resumes every run must end complete, with each
host's work applied exactly once and no marker left behind.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from interlock.fleet.inventory import Host
from interlock.rollout.journal import Journal
from interlock.rollout.plan import Batch, HostPlan, Plan, RunCommand, Step
from interlock.rollout.runs import start_run
from rollout.rollout_processes import Processes

KILLS = 20
HOSTS = 20
SLEEPY = 'touch "$1"; sleep "$2"'
UNSLEEPY = 'rm -f "$1"; sleep "$2"'
WORK = 'echo applied >> "$1"; sleep "$2"'


def step_command(script: str, path: Path, seconds: float) -> RunCommand:
    return RunCommand(("sh", "-c", script, "sh", str(path), f"{seconds:.3f}"))


def chaos_plan(base: Path, rng: random.Random) -> Plan:
    host_plans = []
    for index in range(HOSTS):
        directory = base / f"c{index:02d}"
        directory.mkdir(parents=True)
        delays = [rng.uniform(0.05, 0.2) for _ in range(5)]
        drained, masked, count = directory / "drained", directory / "masked", directory / "count"
        steps = (
            Step(
                "drain",
                step_command(SLEEPY, drained, delays[0]),
                undo=RunCommand(("rm", "-f", str(drained))),
            ),
            Step(
                "mask",
                step_command(SLEEPY, masked, delays[1]),
                undo=RunCommand(("rm", "-f", str(masked))),
            ),
            Step(
                "work",
                RunCommand(
                    ("sh", "-c", WORK, "sh", str(count), f"{delays[2]:.3f}"),
                    check=("test", "-s", str(count)),
                ),
                sticky=True,
            ),
            Step("unmask", step_command(UNSLEEPY, masked, delays[3]), undoes="mask"),
            Step("enable", step_command(UNSLEEPY, drained, delays[4]), undoes="drain"),
        )
        host_plans.append(HostPlan(Host(name=f"c{index:02d}", address="127.0.0.1"), steps))
    batches = tuple(
        Batch(f"b{number}", f"batch {number}", tuple(host_plans[start : start + 5]), concurrency=5)
        for number, start in enumerate(range(0, HOSTS, 5), start=1)
    )
    return Plan("chaos", batches)


def check_converged(base: Path, journal: Journal, run_id: str) -> None:
    assert journal.run(run_id).state == "complete"
    assert {record.state for record in journal.hosts(run_id)} == {"done"}
    for index in range(HOSTS):
        directory = base / f"c{index:02d}"
        assert (directory / "count").read_text() == "applied\n", directory
        assert not (directory / "drained").exists(), directory
        assert not (directory / "masked").exists(), directory


@pytest.mark.slow
def test_kill_anywhere_resume_and_converge(tmp_path: Path, processes: Processes) -> None:
    rng = random.Random(20250101)
    journal_path = tmp_path / "journal.sqlite"
    kills = 0
    runs = 0
    resumes = 0
    interrupted = 0
    with Journal(journal_path) as journal:
        while kills < KILLS:
            runs += 1
            base = tmp_path / f"run{runs}"
            run = start_run(journal, chaos_plan(base, rng), {"transport": "local"})
            while True:
                resumes += 1
                process = processes.rollout(
                    "resume",
                    run.id,
                    "--journal",
                    str(journal_path),
                    "--no-progress",
                    "--yes",
                    log=f"run{runs}.log",
                )
                try:
                    code = process.wait(timeout=rng.uniform(0.1, 3.5) if kills < KILLS else 120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    kills += 1
                    continue
                assert code == 0, (tmp_path / f"run{runs}.log").read_text()[-2000:]
                break
            check_converged(base, journal, run.id)
            # Kills that landed inside a step: started twice, or found done when resuming.
            starts: dict[tuple[str, str], int] = {}
            for entry in journal.log(run.id):
                if entry.state == "started":
                    starts[(entry.host, entry.step)] = starts.get((entry.host, entry.step), 0) + 1
                if entry.detail == "found done when resuming":
                    interrupted += 1
            interrupted += sum(1 for count in starts.values() if count > 1)
    assert kills == KILLS
    assert resumes == KILLS + runs
    assert interrupted > 0
