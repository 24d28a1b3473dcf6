"""16 gate-like writer processes denying at once, with readers and a remover running: nothing
is lost, torn or duplicated (see ledger_worker.py for what each process does)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from host.gate_env import VENV_PYTHON
from interlock.host.ledger import Ledger

WRITERS = 16
DENIALS = 1000  # per writer
READERS = 2
WORKER = Path(__file__).with_name("ledger_worker.py")

pytestmark = pytest.mark.slow


def test_concurrent_denials_readers_and_removals(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "policy-rc.d"
    ledger_dir.mkdir()
    start, stop = tmp_path / "start", tmp_path / "stop"
    procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def spawn(role: str, index: int, count: int = 0) -> None:
        out = tmp_path / f"{role}-{index}.json"
        argv = [role, str(ledger_dir), str(index), str(count), str(start), str(stop), str(out)]
        proc = subprocess.Popen([str(VENV_PYTHON), str(WORKER), *argv])
        procs.append((role, out, proc))

    try:
        for index in range(WRITERS):
            spawn("writer", index, DENIALS)
        for index in range(READERS):
            spawn("reader", index)
        spawn("remover", 0)
        time.sleep(0.5)  # let every interpreter start, so they really run together
        start.touch()
        for role, _, proc in procs:
            if role == "writer":
                assert proc.wait(timeout=300) == 0
        stop.touch()
        for _, _, proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    results = {out.stem: json.loads(out.read_text()) for _, out, _ in procs}
    writes = [call for i in range(WRITERS) for call in results[f"writer-{i}"]]
    assert len(writes) == WRITERS * DENIALS

    # Readers never met an empty, partial or unreadable file, nor two files for one deferral.
    for index in range(READERS):
        reader = results[f"reader-{index}"]
        assert reader["reads"] > 10, "the reader did not run alongside the writers"
        assert reader["problems"] == []
        assert reader["duplicates"] == []

    final = Ledger(str(ledger_dir)).read()
    assert final.problems == []
    by_key: dict[tuple[str, ...], list[tuple[str | None, int]]] = defaultdict(list)
    for event in final.events:
        by_key[(event.unit, event.requestor_type or "", event.requestor_name or "")].append(
            (event.path, event.timestamp)
        )
    assert all(len(found) == 1 for found in by_key.values()), "a deferral was duplicated"
    assert not [p for p in ledger_dir.iterdir() if p.name.endswith(".tmp")]

    calls_by_key: dict[tuple[str, ...], list[dict[str, object]]] = defaultdict(list)
    for call in writes:
        calls_by_key[tuple(call["key"])].append(call)

    # Deferrals nobody removes: created exactly once, and the newest request is what is kept.
    for key, calls in calls_by_key.items():
        if key[0].startswith("churn-"):
            continue
        assert sum(1 for call in calls if call["created"]) == 1, key
        assert len({call["path"] for call in calls}) == 1, key
        newest = max(int(str(call["sent"])) for call in calls)
        assert by_key[key] == [(calls[0]["path"], newest)], key

    # Churned deferrals: a removal only ever took the latest state of a file, never a
    # refreshed (newer) one, and the last request either survives or was removed as it was.
    remover = results["remover-0"]
    removed = {(r["path"], r["stored"]) for r in remover["removed"]}
    assert len(removed) == len(remover["removed"])
    assert removed, "the remover never removed anything: the test did not exercise removal"
    for index in range(WRITERS):
        key = (f"churn-{index}", "charm", f"w{index}")
        calls = calls_by_key[key]
        latest_per_path: dict[str, int] = {}
        for call in calls:
            latest_per_path[str(call["path"])] = int(str(call["stored"]))
        for path, stored in removed:
            if path in latest_per_path:
                assert stored == latest_per_path[path], f"{path}: a newer request was removed"
        last = (calls[-1]["path"], calls[-1]["stored"])
        survivors = by_key.get(key, [])
        assert survivors == [last] or (not survivors and last in removed), (key, survivors)
