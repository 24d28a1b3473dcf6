#!/usr/bin/env python3
"""How long one policy-rc.d call takes, next to the cost of starting Python at all.

Builds a temporary tree with 20 charm-style policy files, renders the gate exactly as
`interlock gate install` does (run by /usr/bin/python3 -IS), and measures the median wall time
and CPU time (user + system, which a busy machine barely moves) of N calls for each case,
interleaved so that machine noise hits every case alike:

  floor     /usr/bin/python3 -I -S -c pass     (the least any Python gate can cost)
  allow     policy-rc.d cron restart           (no policy names cron; the policy cache is warm)
  repeat    policy-rc.d svc-07-3 restart       (blocked; the same deferral is already pending)
  cold      policy-rc.d cron restart           (the policy cache removed before every call)

Run it with any Python 3.11 (the system one or the project's venv): it imports interlock from
this checkout. Usage: bench/gate_speed.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from interlock.host.gate_install import render_gate_script  # noqa: E402 - needs SRC on the path
from interlock.host.policy import CACHE_SETTLE_NS  # noqa: E402

PYTHON = "/usr/bin/python3"
POLICIES = 20
SERVICES_PER_POLICY = 8
TARGET = 1.5


def build(base: Path) -> tuple[Path, Path]:
    """The tree: policies, ledger, config and the gate script; returns (script, cache file)."""
    policy_dir = base / "etc" / "policy-rc.d"
    ledger_dir = base / "var" / "lib" / "policy-rc.d"
    cache = base / "var" / "lib" / "interlock" / "gate-policy.cache"
    for directory in (policy_dir, ledger_dir, cache.parent, base / "log"):
        directory.mkdir(parents=True)
    for app in range(POLICIES):
        lines = ["# Managed by juju", "blocked_actions:"]
        lines += [
            f"  svc-{app:02d}-{n}: [restart, stop, try-restart]" for n in range(SERVICES_PER_POLICY)
        ]
        lines += [f"policy_requestor_name: app-{app:02d}", "policy_requestor_type: charm"]
        (policy_dir / f"charm-app-{app:02d}.policy").write_text("\n".join(lines) + "\n")
    config = base / "gate.conf"
    config.write_text(
        f"policy_dir = {policy_dir}\nledger_dir = {ledger_dir}\n"
        f"log_file = {base / 'log' / 'gate.log'}\ncache_file = {cache}\n"
    )
    script = base / "policy-rc.d"
    script.write_text(render_gate_script(str(SRC), str(config), PYTHON))
    script.chmod(0o755)
    return script, cache


def timed(argv: list[str], expect: int) -> tuple[float, float]:
    """(wall time, CPU time) of one call; CPU time (user + system, from the child's rusage)
    barely moves when other work shares the machine, wall time does."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != expect:
        raise SystemExit(f"{' '.join(argv)} answered {code}, expected {expect}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=200, help="calls per case (200)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gate-speed-") as tmp:
        script, cache = build(Path(tmp))
        gate = [str(script)]
        cases: dict[str, tuple[list[str], int]] = {
            "floor": ([PYTHON, "-I", "-S", "-c", "pass"], 0),
            "allow": ([*gate, "cron", "restart"], 0),
            "repeat": ([*gate, "svc-07-3", "restart"], 101),
            "cold": ([*gate, "cron", "restart"], 0),
        }
        # The gate caches parsed policies only once the files have been still for a while.
        time.sleep(CACHE_SETTLE_NS / 1e9 + 0.2)
        for argv, expect in cases.values():  # warm-up: caches, page cache, the pending event
            for _ in range(10):
                timed(argv, expect)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (argv, expect) in cases.items():
                if name == "cold":
                    cache.unlink(missing_ok=True)
                wall, used = timed(argv, expect)
                samples[name].append(wall)
                cpu[name].append(used)
        events = len(list((Path(tmp) / "var" / "lib" / "policy-rc.d").glob("*.deferred")))

    floor = statistics.median(samples["floor"])
    cpu_floor = statistics.median(cpu["floor"])
    print(f"gate speed: {POLICIES} policy files, {args.runs} calls per case, median wall time")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"gate interpreter: {PYTHON}; this script: {sys.executable}")
    print(f"cpus: {os.cpu_count()}, load average: {load} (figures are noisy when it is high)")
    print()
    header = ("median ms", "p90 ms", "x floor", "cpu ms", "x floor")
    print(f"{'case':<8} {header[0]:>10} " + " ".join(f"{title:>8}" for title in header[1:]))
    for name, values in samples.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        used = statistics.median(cpu[name])
        print(
            f"{name:<8} {median * 1000:>10.2f} {p90 * 1000:>8.2f} {median / floor:>8.2f}"
            f" {used * 1000:>8.2f} {used / cpu_floor:>8.2f}"
        )
    print()
    ratio = statistics.median(samples["allow"]) / floor
    cpu_ratio = statistics.median(cpu["allow"]) / cpu_floor
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"target: allow path <= {TARGET}x floor: {ratio:.2f}x, {verdict}")
    print(f"  in CPU time (steadier on a busy machine): {cpu_ratio:.2f}x")
    print(f"deferred events after the run: {events} (the repeated denial added none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
