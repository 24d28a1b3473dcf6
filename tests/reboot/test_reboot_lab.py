"""Reboots on a lab: lb1 in front of ctl1 and ctl2, each host in its own PID namespace (sshd is
its init), interlock installed with auto restarts off on the controllers.

A controller reboots through `lab-reboot`, which calls reboot(2) inside the host's PID namespace:
the kernel ends that namespace's init, the lab starts the host again from its (persistent)
overlays with a fresh /run, and its init script starts the lab API. That is the container
reboot this machine can do; a kernel reboot is the same from the rollout's side (a new boot
identity after the connection drops).

- Debian's own dbus postinst asks for a reboot; `interlock status` and `fleet status` say so;
- `rollout plan --reboot` shows a reboot instead of the restarts;
- `rollout run --reboot` under load through haproxy drains, reboots (a new boot), loses no
  request, clears what the reboot paid and keeps what it did not (a service not running after
  the reboot), and enables;
- the orchestrator SIGKILLed while it waits for a host to come back: `rollout resume` converges
  without rebooting the host a second time;
- a host powered off stays off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.lab_fleet import fleet_status, interlock, on_hosts, package_snapshot, ssh, ssh_ok
from interlock.lab import processes as host_processes
from interlock.lab.image import REBOOT_COMMAND, boot_record
from interlock.lab.lab import Lab
from interlock.lab.load import LoadGenerator
from interlock.lab.scratch import running_lab
from interlock.lab.spec import LB_PORT
from rollout.lab_rollout import (
    NOTHING_DEFERRED,
    all_in_rotation,
    backend_servers,
    deny_restart,
    events_of_run,
    read_events,
    rollout,
    run_status,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.root, pytest.mark.slow]

CONTROLLERS = ("ctl1", "ctl2")
DBUS_POSTINST = "/var/lib/dpkg/info/dbus.postinst"
# dbus's postinst asks for a reboot on an upgrade while a system bus runs in the same root.
ASK_FOR_REBOOT = f"/etc/init.d/dbus start >/dev/null && {DBUS_POSTINST} configure 1.14.0-1"
LOAD_CLIENTS = 10
API_DELAY_MS = 20
REBOOT_STEPS = [
    "snapshot", "boot", "drain", "reboot", "came-back", "ledger", "health", "soak", "enable",
]  # fmt: skip
ROLL = (
    "--limit", "controllers",
    "--reboot-command", REBOOT_COMMAND,
    "--drain", "--drain-port", "8080",
    "--gate", "http://{address}:8080/health",
    "--gate-passes", "2",
    "--soak", "1s",
    "--max-unavailable", "role=1",
)  # fmt: skip
# Reboots 3 s after the command returns, so the orchestrator is surely waiting when it dies.
LATE_REBOOT = f"sh -c '(sleep 3; exec {REBOOT_COMMAND}) </dev/null >/dev/null 2>&1 &'"


@dataclass(frozen=True)
class LabFleet:
    lab: Lab
    inventory: Path
    journal: Path
    lb_address: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")
    directory = tmp_path_factory.mktemp("reboot-lab")
    with running_lab(
        directory,
        hosts=3,
        controllers=len(CONTROLLERS),
        lbs=1,
        pid_namespace=True,
        api_delay_ms=API_DELAY_MS,
    ) as lab:
        before = host_processes.snapshot(lab.processes())
        package = package_snapshot(tmp_path_factory.mktemp("package"))
        installed = interlock(
            "fleet", "install", "-i", str(lab.inventory_path), "--no-chain", package=package
        )
        assert installed.returncode == 0, installed.stderr
        on_hosts(CONTROLLERS, lambda h: ssh_ok(lab, h, "interlock auto-restarts off"))
        journal = tmp_path_factory.mktemp("journal") / "journal.sqlite"
        yield LabFleet(lab, lab.inventory_path, journal, lab.state().host("lb1").address)
        before |= host_processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"


def init_start(lab: Lab, host: str) -> int:
    """When the host's PID 1 started (clock ticks since the machine booted)."""
    return int(ssh_ok(lab, host, "cut -d' ' -f22 /proc/1/stat").strip())


def api_start(lab: Lab, host: str) -> int:
    """When the lab API's process started. Its pid is no proof: a host's PID namespace starts
    over at every boot, and the same boot sequence gives the API the same pid again."""
    return int(ssh_ok(lab, host, "cut -d' ' -f22 /proc/$(cat /run/lab-api.pid)/stat").strip())


def boots(lab: Lab, host: str) -> int:
    """How often the lab's keeper has started the host again after a reboot."""
    log = (lab.directory / "logs" / "keeper.log").read_text(encoding="utf-8")
    return log.count(f"{host}: rebooted; started again")


def host_status(lab: Lab, host: str) -> tuple[int, str]:
    result = ssh(lab, host, "interlock status")
    return result.returncode, result.stdout.strip()


def test_lab_reboot_refuses_outside_a_host_namespace(fleet: LabFleet) -> None:
    # The command as the machine would run it, with ctl1's record: not its namespace, refused.
    record = boot_record(fleet.lab.directory, "ctl1")
    script = fleet.lab.directory / "lab-reboot-here"
    text = (Path(host_processes.__file__).parent / "files" / "lab-reboot").read_text()
    script.write_text(text.replace("@RECORD@", str(record)))
    result = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "refusing" in result.stderr
    # lb1 runs in its own namespace, but not in ctl1's: refused there too.
    lb = fleet.lab.exec("lb1", ["python3", "-I", str(script)])
    assert lb.returncode == 2 and b"not the host's recorded one" in lb.stderr


def test_a_reboot_is_detected(fleet: LabFleet) -> None:
    lab = fleet.lab
    for host in CONTROLLERS:
        deny_restart(lab, host, "lab-api")
        ssh_ok(lab, host, ASK_FOR_REBOOT)
    # cron does not run on a controller: a reboot does not start it, its event must stay.
    deny_restart(lab, "ctl1", "cron")
    assert host_status(lab, "ctl1") == (
        1,
        "Services queued for restart: cron, lab-api. Reboot required: dbus",
    )
    asked = ssh(lab, "ctl2", "interlock status --json")
    assert asked.returncode == 1  # something is owed
    status = json.loads(asked.stdout)
    assert status["reboot"]["needed"] and status["reboot"]["packages"] == ["dbus"]

    code, document = fleet_status(fleet.inventory, "all")
    assert code == 0  # every host read
    needs = {h["host"]: h["reboot"]["needed"] for h in document["hosts"]}
    assert needs == {"lb1": False, "ctl1": True, "ctl2": True}
    assert document["totals"]["hosts_needing_reboot"] == 2
    table = interlock("fleet", "status", "-i", str(fleet.inventory), "--limit", "controllers")
    assert "2 needing a reboot" in table.stdout


def test_plan_shows_a_reboot_instead_of_restarts(fleet: LabFleet) -> None:
    result = rollout("plan", "-i", str(fleet.inventory), *ROLL, "--reboot", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    for batch in plan["batches"]:
        for host_plan in batch["hosts"]:
            steps = [step["id"] for step in host_plan["steps"]]
            assert steps == REBOOT_STEPS
            kinds = {step["action"]["@"] for step in host_plan["steps"]}
            assert "ApplyDeferred" not in kinds and "Reboot" in kinds
    text = rollout("plan", "-i", str(fleet.inventory), *ROLL, "--reboot").stdout
    assert "reboot instead of restarting (it pays every deferred restart)" in text
    assert f"$ {REBOOT_COMMAND}" in text


@pytest.fixture(scope="module")
def rolled(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    lab = fleet.lab
    events = tmp_path_factory.mktemp("rolled") / "run.jsonl"
    before = {h: (init_start(lab, h), api_start(lab, h), boots(lab, h)) for h in CONTROLLERS}
    argv = ("-i", str(fleet.inventory), *ROLL, "--reboot", "--yes")
    with LoadGenerator([f"http://{fleet.lb_address}:{LB_PORT}/"], concurrency=LOAD_CLIENTS) as load:
        time.sleep(1.0)
        result = rollout(
            "run", *argv, "--journal", str(fleet.journal), "--events", str(events), "--no-progress"
        )
        time.sleep(1.0)
    return {"result": result, "load": load.report(), "before": before, "events": events}


def test_rolling_reboot_under_load(fleet: LabFleet, rolled: dict[str, object]) -> None:
    lab = fleet.lab
    result = rolled["result"]
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0, result.stderr[-3000:]
    load = rolled["load"]
    assert load.ok > 0 and load.failed == 0, load  # type: ignore[attr-defined]
    before = rolled["before"]
    assert isinstance(before, dict)
    recorded = read_events(rolled["events"])  # type: ignore[arg-type]
    run = events_of_run(rolled["events"], recorded[0]["run"])  # type: ignore[arg-type]
    for host in CONTROLLERS:
        started, api_started, boot_count = before[host]
        assert init_start(lab, host) != started, f"{host}: no new boot"
        assert boots(lab, host) == boot_count + 1, f"{host}: rebooted once"
        assert api_start(lab, host) > api_started
        # The lab's state follows the host: its recorded init is the new one.
        init = lab.state().host(host).pid
        assert init is not None and host_processes.alive(init)
        assert (
            lab.exec(host, ["cut", "-d ", "-f22", "/proc/1/stat"]).stdout.strip()
            == str(init_start(lab, host)).encode()
        )
        steps = [e["step"] for e in run if e["kind"] == "step-finished" and e["host"] == host]
        assert steps == REBOOT_STEPS, host
        (reboot,) = (
            e for e in run if e["kind"] == "step-finished" and e["host"] == host
            if e["step"] == "reboot"
        )  # fmt: skip
        assert reboot["state"] == "done" and reboot["detail"].startswith("rebooted, back after")
    # The reboot paid lab-api's deferred restart; cron did not run after it and stays owed.
    assert host_status(lab, "ctl1") == (1, "Services queued for restart: cron")
    assert host_status(lab, "ctl2") == (0, NOTHING_DEFERRED)
    assert all_in_rotation(backend_servers(fleet.lb_address))


def test_killed_while_waiting_resumes_without_a_second_reboot(
    fleet: LabFleet, rolled: dict[str, object], tmp_path: Path
) -> None:
    lab = fleet.lab
    events = tmp_path / "run.jsonl"
    boot_count, started = boots(lab, "ctl2"), init_start(lab, "ctl2")
    argv = [
        sys.executable, "-m", "interlock.cli.main", "rollout", "run",
        "-i", str(fleet.inventory), *ROLL, "--limit", "ctl2",
        "--reboot", "always", "--reboot-command", LATE_REBOOT,
        "--yes", "--journal", str(fleet.journal), "--events", str(events), "--no-progress",
    ]  # fmt: skip
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:

        def waiting_for_the_reboot() -> bool:
            return any(
                e["kind"] == "gate-waiting" and e.get("step") == "reboot"
                for e in read_events(events)
            )

        wait_for(waiting_for_the_reboot, "the rollout waiting for ctl2's new boot", 60)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    run = read_events(events)[0]["run"]
    wait_for(lambda: boots(lab, "ctl2") == boot_count + 1, "ctl2 to reboot", 30)
    wait_for(lambda: ssh(lab, "ctl2", "true").returncode == 0, "ctl2 to answer", 30)

    resumed = rollout("resume", run, "--journal", str(fleet.journal), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert boots(lab, "ctl2") == boot_count + 1  # not rebooted a second time
    assert init_start(lab, "ctl2") != started
    # The killed run never finished its reboot step: it died waiting.
    finished = [e["step"] for e in events_of_run(events, run) if e["kind"] == "step-finished"]
    assert "reboot" not in finished and "drain" in finished
    report = run_status(fleet.journal, run)
    assert report["state"] == "complete"
    (host,) = report["hosts"]
    reboot = next(step for step in host["steps"] if step["step"] == "reboot")
    assert reboot["state"] == "done" and reboot["detail"] == "found done when resuming"
    assert host_status(lab, "ctl2") == (0, NOTHING_DEFERRED)
    wait_for(lambda: all_in_rotation(backend_servers(fleet.lb_address)), "ctl2 back in rotation")


def test_a_refused_reboot_fails_the_host_and_undoes_the_drain(
    fleet: LabFleet, rolled: dict[str, object], tmp_path: Path
) -> None:
    lab = fleet.lab
    count, started = boots(lab, "ctl2"), init_start(lab, "ctl2")
    result = rollout(
        "run", "-i", str(fleet.inventory), *ROLL, "--limit", "ctl2",
        "--reboot", "always", "--reboot-command", "false",
        "--yes", "--journal", str(tmp_path / "journal.sqlite"), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]  # paused: the host failed
    assert "reboot: the reboot command exited 1" in result.stderr
    assert "undid drain" in result.stderr
    assert (boots(lab, "ctl2"), init_start(lab, "ctl2")) == (count, started)
    wait_for(lambda: all_in_rotation(backend_servers(fleet.lb_address)), "ctl2 back in rotation")


def test_a_power_off_is_final(fleet: LabFleet) -> None:
    """Last: a host powered off (SIGINT to its init) is not started again."""
    lab = fleet.lab
    count = boots(lab, "ctl1")
    init = lab.state().host("ctl1").pid
    assert init is not None
    ssh(lab, "ctl1", f"{REBOOT_COMMAND} --poweroff")
    wait_for(lambda: not host_processes.alive(init), "ctl1 to power off")
    time.sleep(1.0)
    assert boots(lab, "ctl1") == count
    assert ssh(lab, "ctl1", "true").returncode == 255  # nobody answers
