"""One process of the ledger concurrency test: a writer (the gate's Ledger.record), a reader
(Ledger.read in a loop) or a remover (Ledger.remove of what it reads), reporting as JSON.

    ledger_worker.py writer DIR INDEX COUNT START_FILE STOP_FILE OUT
"""

from __future__ import annotations

import json
import os
import sys
import time

from interlock.host.ledger import DeferredEvent, Ledger

BASE = 1_700_000_000
SHARED = ("shared-svc", "charm", "shared")


def writer_key(index: int, call: int) -> tuple[str, str, str]:
    """(service, requestor type, requestor name): a mix of shared, own and churned deferrals."""
    slot = call % 3
    if slot == 0:
        return SHARED  # the same deferral from every writer: must stay one event
    if slot == 1:
        # Spelled two ways: `x` and `x.service` are the same deferral.
        return (f"kept-{index}" + (".service" if call % 2 else ""), "charm", f"w{index}")
    return (f"churn-{index}", "charm", f"w{index}")  # the remover takes these away


def key_of(event: DeferredEvent) -> list[str]:
    return [event.unit, event.requestor_type or "", event.requestor_name or ""]


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


def write(ledger: Ledger, index: int, count: int) -> list[dict[str, object]]:
    log = []
    for call in range(count):
        service, kind, name = writer_key(index, call)
        sent = BASE + call // 6  # each deferral is asked twice per second: refreshes and repeats
        stored, created = ledger.record(
            DeferredEvent(service, "restart", "Package update", sent, name, kind)
        )
        log.append(
            {
                "key": [service.removesuffix(".service"), kind, name],
                "sent": sent,
                "path": stored.path,
                "stored": stored.timestamp,
                "created": created,
            }
        )
    return log


def read(ledger: Ledger, stop: str) -> dict[str, object]:
    reads, problems, duplicates = 0, [], []
    while not os.path.exists(stop):
        view = ledger.read()
        reads += 1
        problems += [str(problem) for problem in view.problems]
        seen: set[tuple[str, ...]] = set()
        for event in view.events:
            key = tuple(key_of(event))
            if key in seen and not key[0].startswith("churn-"):
                duplicates.append(list(key))
            seen.add(key)
        time.sleep(0.001)  # leave the writers most of the CPU
    return {"reads": reads, "problems": problems, "duplicates": duplicates}


def remove(ledger: Ledger, stop: str) -> dict[str, object]:
    removed, rounds = [], 0
    while not os.path.exists(stop):
        rounds += 1
        churn = [e for e in ledger.read().events if e.unit.startswith("churn-")]
        for event in ledger.remove(churn):
            removed.append({"key": key_of(event), "path": event.path, "stored": event.timestamp})
        time.sleep(0.005)
    return {"rounds": rounds, "removed": removed}


def main(argv: list[str]) -> int:
    role, directory, index, count, start, stop, out = argv
    ledger = Ledger(directory)
    wait_for(start)
    result: object
    if role == "writer":
        result = write(ledger, int(index), int(count))
    elif role == "reader":
        result = read(ledger, stop)
    else:
        result = remove(ledger, stop)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
