"""interlock status --metrics: the ledger in Prometheus' text format, written atomically."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from interlock.host.hooks import HookStore
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.paths import HostPaths

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="(\\.|[^"\\])*",?)*\})? (-?[0-9.]+)$')


def samples(text: str) -> dict[str, float]:
    """Every sample line, checked against the exposition format's grammar."""
    found = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert SAMPLE.match(line), f"not a valid sample line: {line!r}"
        key, value = line.rsplit(" ", 1)
        found[key] = float(value)
    return found


def test_status_writes_the_ledger_as_metrics(tmp_path: Path) -> None:
    paths = HostPaths.under(tmp_path)
    ledger = Ledger(str(paths.ledger_dir))
    ledger.record(DeferredEvent("ovs", "restart", "Package update", 1700000000, "ovn", "charm"))
    ledger.record(
        DeferredEvent("ovs.service", "stop", 'reason with "quotes"', 1700000500, "x", "y")
    )
    (paths.ledger_dir / "broken.deferred").write_text("{not yaml: [")
    HookStore(paths.state_dir).record("config-changed", ["true"])
    target = tmp_path / "interlock.prom"

    result = subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", "--root", str(tmp_path),
         "status", "--metrics", str(target)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert result.returncode == 3  # an unreadable ledger file
    found = samples(target.read_text())
    assert found == {
        'interlock_deferred_restarts{action="restart",requestor="charm:ovn",service="ovs"}': 1,
        'interlock_deferred_restarts{action="stop",requestor="y:x",service="ovs"}': 1,
        'interlock_deferred_restart_oldest_timestamp_seconds{service="ovs"}': 1700000000,
        'interlock_deferred_hooks{hook="config-changed"}': 1,
        "interlock_ledger_unreadable_files": 1,
        "interlock_reboot_required": 0,
        "interlock_reboot_newer_kernels": 0,
    }
    assert not list(tmp_path.glob(".interlock.prom.*"))  # the temporary file was renamed
