"""`interlock status` over a ledger of 10,000 event files, against the charm-helpers way.

The baseline is what the OpenStack charms' code does to read the same ledger: glob the directory
and `yaml.safe_load` each file. Both run as a fresh process, as an operator or a monitoring
check would run them, on the same files; half of them in the flow style older PyYAML wrote.

    .venv/bin/python bench/ledger_status.py [--files 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interlock.host.ledger import DeferredEvent, render_event

CHARM_WAY = """
import glob, sys, yaml
events = []
for path in glob.glob(sys.argv[1] + "/*.deferred"):
    with open(path) as handle:
        events.append(yaml.safe_load(handle))
services = sorted({event["service"] for event in events})
print("Services queued for restart: " + ", ".join(services))
"""
# Flow style on two lines, as older PyYAML (and many charm-managed hosts) wrote them.
FLOW = (
    "{{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm,\n"
    "  reason: Package update, service: {service}, timestamp: {timestamp}}}\n"
)


def write_ledger(directory: Path, count: int) -> None:
    for index in range(count):
        service = f"svc{index % 50}"
        timestamp = 1700000000 + index
        if index % 2:
            text = FLOW.format(service=service, timestamp=timestamp)
        else:
            event = DeferredEvent(service, "restart", "Package update", timestamp, "x", "charm")
            text = render_event(event)
        (directory / f"charm-x-{index:06d}.deferred").write_text(text)


def timed(argv: list[str], expect: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if expect not in result.stdout:
        raise SystemExit(f"{argv[:3]}: unexpected output {result.stdout[:200]!r} {result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as scratch:
        root = Path(scratch)
        ledger = root / "var" / "lib" / "policy-rc.d"
        ledger.mkdir(parents=True)
        write_ledger(ledger, args.files)
        interlock = [sys.executable, "-m", "interlock.cli.main", "--root", str(root), "status"]
        charm = [sys.executable, "-c", CHARM_WAY, str(ledger)]
        ours: list[float] = []
        theirs: list[float] = []
        timed(interlock, "Services queued for restart: svc0")  # warm the page cache
        for _ in range(args.runs):  # interleaved, so both see the same machine
            ours.append(timed(interlock, "Services queued for restart: svc0"))
            theirs.append(timed(charm, "Services queued for restart: svc0"))
    mine, base = statistics.median(ours), statistics.median(theirs)
    print(f"ledger of {args.files} event files, median of {args.runs} runs (fresh processes)")
    print(f"  interlock status                    {mine:7.3f} s")
    print(f"  glob + yaml.safe_load (charm way)   {base:7.3f} s")
    print(f"  ratio                               {mine / base:7.3f}   (goal <= 0.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
