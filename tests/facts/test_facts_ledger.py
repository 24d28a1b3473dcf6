"""The ledger fact: its command run for real on ledger files, its parser on lab-host output."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from interlock.facts import ledger
from interlock.facts.ledger import PENDING, RESTARTED_SINCE
from interlock.facts.sections import new_marker
from interlock.host.trusted_file import EVENT_MAX_BYTES

FIXTURES = Path(__file__).parent.parent / "fixtures"
MARKER = "@@interlock-fixture"  # what tests/fixtures/facts/capture.py runs with


def captured(name: str) -> ledger.LedgerFact:
    text = (FIXTURES / "facts" / name).read_bytes().decode("utf-8", "surrogateescape")
    return ledger.parse(text, MARKER, "ctl1")


def test_a_lab_controllers_ledger_before_and_after_its_service_restarted() -> None:
    before = captured("ledger-ctl1-before.txt")
    after = captured("ledger-ctl1-after.txt")
    assert before.hostname == "ctl1"
    # lab-api twice (once as a unit name), nosuch once; the broken file is a problem naming
    # host, file and line, and the rest is still read.
    assert [event.unit for event in before.events] == ["lab-api", "nosuch", "lab-api"]
    assert before.services == ["lab-api", "nosuch"]
    [problem] = before.problems
    assert problem.startswith("ctl1:/var/lib/policy-rc.d/charm-broken-1.deferred line 2:")
    assert before.hooks == ("config-changed",)
    assert [before.state(e) for e in before.events] == [PENDING] * 3
    assert [after.state(e) for e in after.events] == [RESTARTED_SINCE, PENDING, RESTARTED_SINCE]
    assert after.pending_services == ["nosuch"]
    # The instances compare across reads: the restart is a new process, a later start.
    old, new = before.instances["lab-api"], after.instances["lab-api"]
    assert new.differs_from(old) and not old.differs_from(old)
    assert not before.instances["nosuch"].active
    # Start times against the boot time from clock and uptime are the sharper lower bound.
    assert before.states["lab-api"].pid == old.pid
    started = before.states["lab-api"].started_at
    assert started is not None and old.started_at is not None
    assert 0 <= started - old.started_at < 1.02


def test_a_host_with_an_empty_ledger() -> None:
    empty = captured("ledger-cmp1-empty.txt")
    assert (empty.hostname, empty.events, empty.hooks, empty.problems) == ("cmp1", (), (), ())
    assert not empty.pending and not empty.states


def test_the_command_on_a_charm_managed_ledger_keeps_each_files_bytes(tmp_path: Path) -> None:
    """Run for real: events of every YAML style, a broken file, bytes that are not UTF-8."""
    directory = tmp_path / "policy-rc.d"
    shutil.copytree(FIXTURES / "charm" / "ledger-neutron-gateway", directory)
    (directory / "broken.deferred").write_text("service: [unclosed\n")
    (directory / "odd.deferred").write_bytes(b"service: caf\xe9\n")
    (directory / "ignored.txt").write_text("not an event\n")
    marker = new_marker()
    argv = ledger.command(marker, str(directory), str(tmp_path / "no-hooks"))
    output = subprocess.run(argv, capture_output=True, check=True).stdout
    fact = ledger.parse(output.decode("utf-8", "surrogateescape"), marker, "gw1")
    assert len(fact.events) == 7
    assert "openvswitch-switch" in fact.services
    assert len(fact.problems) == 2
    assert all(p.startswith(f"gw1:{directory}/") for p in fact.problems)
    for path in directory.glob("*.deferred"):
        assert fact.digests[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    # No service named in the ledger runs on this machine's /etc/init.d: no start times.
    assert fact.pending == list(fact.events)


def test_hostile_files_are_problems_and_nothing_hangs_or_is_dropped_silently(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "policy-rc.d"
    directory.mkdir()
    good = "action: restart\nreason: x\nservice: cron\ntimestamp: 1700000000\n"
    (directory / "good.deferred").write_text(good)
    (directory / "nul.deferred").write_bytes(b"service: cr\0on\nreason: x\naction: restart\n")
    (directory / "huge.deferred").write_bytes(b"#" * (EVENT_MAX_BYTES + 10) + b"\n")
    (directory / "lines.deferred").write_bytes(b"\n" * 60000)
    os.mkfifo(directory / "fifo.deferred")  # never opened: reading it would block
    (directory / "link.deferred").symlink_to(directory / "good.deferred")
    marker = new_marker()
    argv = ledger.command(marker, str(directory), str(tmp_path / "no-hooks"))
    result = subprocess.run(argv, capture_output=True, timeout=30, check=True)
    fact = ledger.parse(result.stdout.decode("utf-8", "surrogateescape"), marker, "h1")
    assert [event.path for event in fact.events] == [str(directory / "good.deferred")]
    problems = "\n".join(fact.problems)
    assert f"h1:{directory}/nul.deferred line 1: invalid YAML: a control character" in problems
    assert f"h1:{directory}/huge.deferred" in problems
    assert f"h1:{directory}/lines.deferred" in problems
    assert "fifo" not in problems and "link" not in problems
    # A file read only up to its NUL byte is never removable by that read's digest.
    assert str(directory / "nul.deferred") not in fact.digests
    assert result.stderr == b""
