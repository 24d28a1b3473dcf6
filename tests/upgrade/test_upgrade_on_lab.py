"""Release upgrades of a real lab: 3 controllers behind haproxy and 2 computes go from v1 to v2
of real packages with real apt-get, under HTTP load, through `interlock upgrade` as a process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interlock.lab.load import LoadGenerator, LoadReport
from interlock.rollout.journal import Journal
from upgrade.upgrade_lab import (
    CLI,
    ROLE_SERVICES,
    UpgradeLab,
    events,
    lb_servers,
    upgrade_lab,
    wait_all_up,
)
from upgrade.upgrade_packages import V1, V2

pytestmark = [
    pytest.mark.lab,
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(t) for t in ("dpkg-deb", "dpkg-scanpackages", "apt-ftparchive")),
        reason="needs root and dpkg-dev, apt-utils",
    ),
]

PACKAGES = {
    "controller": ["ilu-lib", "ilu-ident", "ilu-compute-common", "ilu-compute-conductor"],
    "compute": [
        "ilu-lib",
        "ilu-compute-common",
        "ilu-telemetry-agent",
        "ilu-compute-agent",
        "ilu-net-agent",
    ],
}
DATA_PLANE = ["ilu-telemetry-agent", "ilu-compute-agent", "ilu-net-agent"]
UPGRADED = ["ilu-ident-api", "ilu-compute-conductor", *DATA_PLANE]


@pytest.fixture(scope="module")
def ulab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpgradeLab]:
    with upgrade_lab(tmp_path_factory.mktemp("upgrade")) as prepared:
        yield prepared


def assert_upgraded(ulab: UpgradeLab) -> None:
    for host in ulab.hosts:
        role = ulab.role(host)
        assert ulab.versions(host, PACKAGES[role]) == dict.fromkeys(PACKAGES[role], V2), host
        # Dependencies apt pulled in stay automatically installed.
        auto = ulab.sh(host, "apt-mark showauto ilu-lib ilu-compute-common").split()
        assert auto == ["ilu-compute-common", "ilu-lib"], host
        # Nothing held: no marker, no blocking policy; every service enabled and running.
        assert ulab.held(host) == "", host
        for service in ROLE_SERVICES[role]:
            ulab.sh(host, f"service {service} status >/dev/null")
            ulab.sh(host, f"ls /etc/rc2.d/S[0-9][0-9]{service} >/dev/null")
            starts = [s for s in ulab.starts(host, service) if s.startswith(f"start {V2}")]
            if service in UPGRADED:
                assert len(starts) == 1, (host, service, ulab.starts(host, service))
    assert set(lb_servers(ulab.lab).values()) == {"UP"}


def assert_interrupted_once(ulab: UpgradeLab, since: float) -> None:
    """Every compute's services were down together exactly once since `since`: each stopped
    once and started once, and every stop came before every start (one visit, not three)."""
    for host in ulab.hosts:
        if ulab.role(host) != "compute":
            continue
        stops, starts = [], []
        for service in DATA_PLANE:
            moves = [
                (kind, when) for kind, when in ulab.service_events(host, service) if when > since
            ]
            assert [kind for kind, _ in moves] == ["stop", "start"], (host, service, moves)
            stops.append(moves[0][1])
            starts.append(moves[1][1])
        assert max(stops) < min(starts), (host, stops, starts)
        # Started in the reverse project order: net, compute, telemetry.
        assert starts == sorted(starts, reverse=True), (host, starts)


def run_log(ulab: UpgradeLab) -> str:
    return ulab.cli("upgrade", "status", "--journal", str(ulab.journal)).stdout


def test_upgrade_under_load_db_once_online_exit_codes_and_nothing_on_a_second_run(
    ulab: UpgradeLab,
) -> None:
    journal_events = ulab.work / "first.jsonl"
    since = time.time()
    # Online migrations that need a person (exit 2) stop the run at the end of `compute`.
    (ulab.db / "compute.blocked").touch()
    plan = ulab.cli(*ulab.upgrade_args("plan", "--json"))
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)
    assert document["first_controller"] == "ctl2"
    with LoadGenerator([ulab.lb_url], concurrency=8) as load:
        first = ulab.cli(*ulab.run_args(journal_events))
        assert first.returncode == 3, first.stdout[-2000:] + first.stderr[-3000:]
        status = json.loads(
            ulab.cli("upgrade", "status", "--journal", str(ulab.journal), "--json").stdout
        )
        assert status["state"] == "paused"
        failed = [h for h in status["hosts"] if h["state"] == "failed"]
        assert [(h["batch"], h["host"]) for h in failed] == [("compute/finish", "ctl2")], failed
        assert "exit 2" in failed[0]["detail"]
        # Exit 1: run again (twice), then 0.
        (ulab.db / "compute.blocked").unlink()
        (ulab.db / "compute.pending").write_text("2\n")
        resumed = ulab.cli(
            "upgrade", "resume", "--yes", "--no-progress", "--journal", str(ulab.journal)
        )
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        time.sleep(1.0)  # traffic on the upgraded backends too
    report: LoadReport = load.report()
    assert report.failed == 0, report
    assert report.ok > 50

    assert_upgraded(ulab)
    assert_interrupted_once(ulab, since)
    # All of it happened inside the lab hosts: this machine has none of the packages.
    assert not Path("/usr/lib/ilu").exists()
    machine = subprocess.run(["dpkg-query", "-W", "ilu-lib"], capture_output=True, check=False)
    assert machine.returncode != 0
    # The database steps ran once per project, on the VIP holder; online migrations as told.
    ident = [line for line in ulab.schema_log("ident") if V2 in line]
    assert ident == [f"sync {V2} ctl2"]
    compute = [line for line in ulab.schema_log("compute") if V2 in line]
    assert compute == [
        f"expand {V2} ctl2",
        f"migrate {V2} ctl2",
        f"contract {V2} ctl2",
        *[f"online {V2} ctl2"] * 4,  # blocked (2), then 1, 1, 0
    ]
    assert (ulab.db / "compute.pending").read_text().strip() == "0"
    # The first controller's API came back on the new schema, never before it (held through
    # the package's own restart in its postinst).
    assert [s for s in ulab.starts("ctl2", "ilu-ident-api") if V2 in s] == [
        f"start {V2} schema={V2}"
    ]
    assert [s for s in ulab.starts("ctl2", "ilu-compute-conductor") if V2 in s] == [
        f"start {V2} schema={V2} migrated"
    ]

    # What ran is what was planned: every planned step of every host, in the plan's order.
    with Journal(ulab.journal) as journal:
        run = journal.runs(1)[0]
        plan_steps = {
            (batch.id, hp.host.name): [step.id for step in hp.steps]
            for batch in run.plan.batches
            for hp in batch.hosts
        }
        done: dict[tuple[str, str], list[str]] = {}
        for entry in journal.log(run.id):
            if entry.state == "done" and not entry.step.endswith(":undo"):
                steps = done.setdefault((entry.batch, entry.host), [])
                if entry.step not in steps:
                    steps.append(entry.step)
        runs = len(journal.runs(100))
    assert done == plan_steps
    # Each compute is visited in one batch, holding and releasing its three projects once.
    visits = [(b, h) for b, h in plan_steps if h.startswith("cmp") and not b.startswith("prep")]
    assert sorted(visits) == [
        ("finalize", "cmp1"),
        ("finalize", "cmp2"),
        ("visit/compute", "cmp1"),
        ("visit/compute", "cmp2"),
    ]
    assert plan_steps[("visit/compute", "cmp1")] == [
        "snapshot",
        "hold",
        "install",
        "release-net",
        "release-ilu-compute-agent",
        "wait-ilu-compute-agent",
        "release-telemetry",
        "restarted",
    ]
    assert [e["kind"] for e in events(journal_events)].count("run-finished") == 1

    # A second run finds every host at the release: nothing to do, no run recorded.
    again = ulab.cli(*ulab.run_args(ulab.work / "second.jsonl"))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    with Journal(ulab.journal) as journal:
        assert len(journal.runs(100)) == runs


def reset_to_v1(ulab: UpgradeLab) -> None:
    """Back to v1 everywhere (a downgrade), every service running, fresh database and logs."""
    line = ulab.server.line("v1")
    for host in ulab.hosts:
        role = ulab.role(host)
        services = " ".join(ROLE_SERVICES[role])
        pins = " ".join(f"{p}={V1}" for p in PACKAGES[role])
        ulab.sh(
            host,
            f"""set -e
rm -rf /var/lib/interlock/held /etc/policy-rc.d/interlock-upgrade-*
printf '%s' '{line}' > /etc/apt/sources.list.d/ilu.list
for s in {services}; do update-rc.d $s enable >/dev/null 2>&1; done
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --allow-downgrades {pins} >/dev/null
apt-mark auto ilu-lib ilu-compute-common >/dev/null
for s in {services}; do service $s start >/dev/null; done
rm -f /var/log/ilu/*.starts
""",
            timeout=300,
        )
    for name in ("ident", "compute"):
        (ulab.db / f"{name}.schema").write_text(f"{V1}\n")
        for suffix in ("log", "pending", "blocked"):
            (ulab.db / f"{name}.{suffix}").unlink(missing_ok=True)
    wait_all_up(ulab.lab)


def run_until(
    argv: list[str], event_file: Path, stop: Callable[[dict[str, object]], bool]
) -> tuple[int, str]:
    """Run `interlock upgrade ...`; SIGKILL it as soon as an event matches `stop`. Returns its
    exit status and its output."""
    output = event_file.with_suffix(".out")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(CLI), *argv], stdout=sink, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while process.poll() is None:
            if any(stop(event) for event in events(event_file)):
                process.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
        process.wait()
    return process.returncode, output.read_text(errors="replace")[-4000:]


def test_a_killed_upgrade_resumes_and_converges(ulab: UpgradeLab) -> None:
    reset_to_v1(ulab)
    ulab.journal.unlink(missing_ok=True)
    first, second = ulab.work / "kill1.jsonl", ulab.work / "kill2.jsonl"
    with LoadGenerator([ulab.lb_url], concurrency=8) as load:
        # Killed while another controller installs ident v2: drained, held, mid-install.
        status, output = run_until(
            ulab.run_args(first),
            first,
            lambda e: (
                e.get("kind") == "step-started"
                and e.get("batch") == "ident/controller"
                and e.get("step") == "install"
            ),
        )
        assert status == -signal.SIGKILL, output
        drained = [name for name, status in lb_servers(ulab.lab).items() if status != "UP"]
        assert len(drained) == 1, lb_servers(ulab.lab)  # it stays out of rotation meanwhile
        # Killed again in the middle of a merged visit: a compute's three projects held, their
        # packages being installed.
        resume = ["upgrade", "resume", "--yes", "--no-progress", "--journal", str(ulab.journal)]
        status, output = run_until(
            [*resume, "--events", str(second)],
            second,
            lambda e: (
                e.get("kind") == "step-started"
                and e.get("batch") == "visit/compute"
                and e.get("step") == "install"
            ),
        )
        assert status == -signal.SIGKILL, output
        killed = time.time()
        visited = next(
            str(e["host"])
            for e in events(second)
            if e.get("kind") == "step-started" and e.get("step") == "install"
        )
        assert ulab.held(visited) != ""  # its services are held: stopped, disabled, blocked
        final = subprocess.run(
            [sys.executable, str(CLI), *resume],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
        time.sleep(1.0)
    report = load.report()
    assert report.failed == 0, report
    assert_upgraded(ulab)
    # Every project upgraded on every compute, each service started once after the kill.
    for host in ulab.hosts:
        if ulab.role(host) == "compute":
            for service in DATA_PLANE:
                moves = ulab.service_events(host, service)
                starts = [when for kind, when in moves if kind == "start" and when > killed]
                assert len(starts) == 1, (host, service, moves)
    assert [line for line in ulab.schema_log("ident") if V2 in line] == [f"sync {V2} ctl2"]
    assert [line.split()[0] for line in ulab.schema_log("compute") if V2 in line] == [
        "expand",
        "migrate",
        "contract",
        "online",
    ]
    assert "complete" in run_log(ulab)
