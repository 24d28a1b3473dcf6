"""systemd lab hosts: image build, boot time and memory, next to sysv hosts in the same run.

    .venv/bin/python bench/systemd_hosts.py [--hosts 1,6,20] [--build]

--build builds the image from scratch into a temporary cache (the cached one is left alone).
Each lab is up (every sshd, API and haproxy answering, every systemd finished booting) before
its time is taken; memory is the proportional set size (Pss) of every process of the lab's
hosts, per host, once boot-time work has settled.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from interlock.lab.lab import Lab
from interlock.lab.rootfs import default_recipe, ensure_image
from interlock.lab.scratch import pick_name, pick_subnet


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # exited meanwhile
        total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total


def measure(hosts: int, systemd: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-sd-", dir="/var/tmp") as tmp:
        lab = Lab(Path(tmp) / "lab", name=pick_name("b"), subnet=pick_subnet())
        started = time.monotonic()
        try:
            lab.up(hosts=hosts, controllers=min(2, hosts - 1), lbs=1 if hosts > 2 else 0,
                   systemd=hosts if systemd else 0)  # fmt: skip
            seconds = time.monotonic() - started
            time.sleep(2)  # let boot-time work settle before reading memory
            per_host = pss_kib(list(lab.processes())) / 1024 / hosts
        finally:
            lab.down()
        return seconds, per_host


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="1,6,20")
    parser.add_argument("--build", action="store_true")
    args = parser.parse_args()
    if args.build:
        cache = Path(tempfile.mkdtemp(prefix="bench-images-", dir="/var/tmp"))
        try:
            image = ensure_image(default_recipe(), cache)
            print(f"image built from scratch in {image.seconds:.1f} s")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    ensure_image()
    print(f"{'hosts':>5}  {'kind':<8}{'up (s)':>8}{'MB/host':>9}")
    for count in (int(n) for n in args.hosts.split(",")):
        for systemd in (False, True):
            seconds, per_host = measure(count, systemd)
            kind = "systemd" if systemd else "sysv"
            print(f"{count:>5}  {kind:<8}{seconds:>8.2f}{per_host:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
