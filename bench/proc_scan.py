"""Median wall time of interlock's /proc scan over 2,000 processes, against a naive scan.

Spawns 2,000 `sleep` processes (200 of them from a copy of the binary that is then replaced, as
dpkg replaces files, so the scan has real findings), times `scan_processes` (one pass, each
distinct mapping judged once) and the full `find_outdated_processes` (plus service mapping and
the Python check), and, as the baseline measured in the same run, a naive scan that stats every
mapped file of every process. Kills every process it started, whatever happens.

Target on these machines: scan ≤ 0.25 s median (needrestart 3.6 took about 1.1 s on a
similar set). Run as root: python bench/proc_scan.py [--processes N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from interlock.detect.findings import find_outdated_processes
from interlock.detect.stale import scan_processes
from interlock.detect.system import System

TARGET_SECONDS = 0.25


def naive_scan(proc: str = "/proc") -> int:
    """What a straightforward implementation does: every mapping of every process, stat'ed."""
    stale = 0
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            os.readlink(f"{proc}/{name}/exe")
            with open(f"{proc}/{name}/maps", encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or "x" not in fields[1] or not fields[5].startswith("/"):
                continue
            path = fields[5]
            if path.endswith(" (deleted)"):
                stale += 1
                continue
            try:
                if os.stat(path).st_ino != int(fields[4]):
                    stale += 1
            except OSError:
                continue
    return stale


def median_seconds(function: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    stale_count = args.processes // 10
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as work:
        program = Path(work) / "bench-sleeper"
        sleep = shutil.which("sleep") or "/usr/bin/sleep"
        shutil.copy2(sleep, program)
        try:
            for index in range(args.processes):
                argv = [str(program) if index < stale_count else sleep, "600"]
                started.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
            time.sleep(0.5)  # let every child finish exec
            replacement = program.with_name("bench-sleeper.new")
            shutil.copy2(sleep, replacement)
            os.replace(replacement, program)

            scan = scan_processes()
            mine = {process.pid for process in started[:stale_count]}
            found = len(mine & set(scan.stale))
            system = System.live("/")
            print(f"processes scanned: {scan.scanned} ({args.processes} spawned)")
            print(f"outdated found among the {stale_count} replaced ones: {found}")
            scan_time = median_seconds(scan_processes, args.rounds)
            full_time = median_seconds(lambda: find_outdated_processes(system), args.rounds)
            naive_time = median_seconds(naive_scan, args.rounds)
            print(f"median of {args.rounds} rounds:")
            print(f"  interlock scan_processes          {scan_time:.3f} s")
            print(f"  interlock find_outdated_processes {full_time:.3f} s (+ services, Python)")
            print(f"  naive scan (baseline)             {naive_time:.3f} s")
            print(f"  speed-up over the baseline        {naive_time / scan_time:.1f}x")
            verdict = "met" if scan_time <= TARGET_SECONDS else "MISSED"
            print(f"target ≤ {TARGET_SECONDS} s: {verdict}")
            return 0 if found == stale_count else 1
        finally:
            for process in started:
                process.kill()
            for process in started:
                process.wait()


if __name__ == "__main__":
    raise SystemExit(main())
