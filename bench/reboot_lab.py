"""A rolling reboot on lab hosts, timed next to a rolling restart of the same hosts.

    .venv/bin/python bench/reboot_lab.py [--controllers 3] [--runs 2]

Needs root (it builds a lab). A throw-away lab of lb1 and N controllers, each in its own PID
namespace, interlock installed with auto restarts off. Each run queues a restart of the lab API
on every controller (refused by the gate through invoke-rc.d) and then, under load through lb1:

- baseline: `rollout run` of the deferred restarts (drain, restart, restarted, health, enable);
- reboot: the same hosts made to need a reboot (Debian's dbus postinst) and `rollout run
  --reboot` with `lab-reboot` (drain, reboot, a new boot, came back, ledger, health, enable).

Prints each run's seconds, the ratio reboot/restart, the median time from the reboot command to
the host answering from its new boot, and the requests that failed under load (target: 0).
A lab host's reboot is its init starting over in a new PID namespace, not a kernel boot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interlock.lab.image import REBOOT_COMMAND
from interlock.lab.lab import Lab
from interlock.lab.load import LoadGenerator
from interlock.lab.scratch import running_lab
from interlock.lab.spec import LB_PORT

GATES = (
    "--limit", "controllers",
    "--drain", "--drain-port", "8080",
    "--gate", "http://{address}:8080/health",
    "--gate-passes", "2",
    "--max-unavailable", "role=1",
    "--yes", "--no-progress",
)  # fmt: skip
ASK_FOR_REBOOT = (
    "/etc/init.d/dbus start >/dev/null && /var/lib/dpkg/info/dbus.postinst configure 1.14.0-1"
)


def interlock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def on_host(lab: Lab, host: str, command: str) -> str:
    result = subprocess.run(
        lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode not in (0, 1):
        raise SystemExit(f"{host}: {command}: exit {result.returncode}: {result.stderr}")
    return result.stdout


def timed_run(lab: Lab, journal: Path, events: Path, *flags: str) -> tuple[float, int, int]:
    """(seconds, requests ok, requests failed) of one `rollout run` under load."""
    url = f"http://{lab.state().host('lb1').address}:{LB_PORT}/"
    argv = ("rollout", "run", "-i", str(lab.inventory_path), *GATES, *flags)
    with LoadGenerator([url], concurrency=10) as load:
        started = time.perf_counter()
        result = interlock(*argv, "--journal", str(journal), "--events", str(events), "--again")
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"rollout run failed: {result.stderr[-2000:]}")
    report = load.report()
    return elapsed, report.ok, report.failed


def reboot_seconds(events: Path) -> list[float]:
    return [
        event["duration"]
        for event in map(json.loads, events.read_text().splitlines())
        if event["kind"] == "step-finished" and event.get("step") == "reboot"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    controllers = [f"ctl{n}" for n in range(1, args.controllers + 1)]
    restarts: list[float] = []
    reboots: list[float] = []
    waits: list[float] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="interlock-bench-", dir="/var/tmp") as scratch:
        directory = Path(scratch)
        with running_lab(
            directory / "lab",
            hosts=args.controllers + 1,
            controllers=args.controllers,
            lbs=1,
            pid_namespace=True,
            api_delay_ms=20,
        ) as lab:
            installed = interlock("fleet", "install", "-i", str(lab.inventory_path), "--no-chain")
            if installed.returncode != 0:
                raise SystemExit(f"fleet install failed: {installed.stderr}")
            for host in controllers:
                on_host(lab, host, "interlock auto-restarts off")
            journal = directory / "journal.sqlite"
            for number in range(1, args.runs + 1):
                for host in controllers:
                    on_host(lab, host, "invoke-rc.d lab-api restart")
                seconds, ok, lost = timed_run(lab, journal, directory / f"restart{number}.jsonl")
                restarts.append(seconds)
                failed += lost
                print(f"run {number}: rolling restart {seconds:.2f} s ({ok} ok, {lost} failed)")
                for host in controllers:
                    on_host(lab, host, f"invoke-rc.d lab-api restart; {ASK_FOR_REBOOT}")
                events = directory / f"reboot{number}.jsonl"
                flags = ("--reboot", "--reboot-command", REBOOT_COMMAND)
                seconds, ok, lost = timed_run(lab, journal, events, *flags)
                reboots.append(seconds)
                waits += reboot_seconds(events)
                failed += lost
                print(f"run {number}: rolling reboot  {seconds:.2f} s ({ok} ok, {lost} failed)")
    restart, reboot = statistics.median(restarts), statistics.median(reboots)
    print(
        f"{args.controllers} controllers: rolling restart {restart:.2f} s, rolling reboot "
        f"{reboot:.2f} s (x{reboot / restart:.2f}); reboot step median "
        f"{statistics.median(waits):.2f} s (command to new boot answering); "
        f"failed requests {failed} (target 0)"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
