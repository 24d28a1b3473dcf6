"""`interlock demo operators`: two operators and a FleetLock host share one budget through etcd.

The lab test runs the demo end to end and reads its verdict, which the demo computes from the
hosts' own start/end records; the counting itself is checked on records written by hand.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from interlock.demo.operators_story import most_at_once, parse_record

INTERLOCK = [sys.executable, "-m", "interlock.cli.main"]


def test_records_become_spans_and_an_unfinished_one_stays_open() -> None:
    text = "start 10.0\nend 12.5\nstart 20.25\nend\nstart 30.0\n"
    assert parse_record(text) == [(10.0, 12.5), (20.25, None), (30.0, None)]
    assert parse_record("") == []
    assert parse_record("end 3.0\nstart x\n") == []


def test_overlaps_are_counted_and_back_to_back_is_not_one() -> None:
    assert most_at_once([]) == 0
    assert most_at_once([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]) == 1
    assert most_at_once([(1.0, 3.0), (2.0, 4.0)]) == 2
    assert most_at_once([(1.0, 5.0), (2.0, 3.0), (2.5, None)]) == 3
    assert most_at_once([(1.0, None), (9.0, 10.0)]) == 2


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
def test_operators_demo_never_has_two_computes_down_and_everyone_completes() -> None:
    result = subprocess.run(
        [*INTERLOCK, "demo", "operators"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    # The verdict, counted from the hosts' records: never two computes at once, all done.
    most = re.search(r"most computes disrupted at once: (\d+) \(the shared limit: 1\)", out)
    assert most is not None, out[-4000:]
    assert int(most.group(1)) == 1
    counts = re.search(r"disruptions per compute: (.*) \((\d+) in all\)", out)
    assert counts is not None
    assert counts.group(1) == "cmp1 1, cmp2 2, cmp3 2, cmp4 2" and counts.group(2) == "7"
    assert "alice's rollout: complete (exit status 0)" in out
    assert "bob's rollout: complete (exit status 0)" in out
    assert "cmp4's FleetLock agent: complete: slot taken, host disrupted, slot given back" in out
    # Each rollout said so itself, and someone really waited for a slot held by another.
    assert len(re.findall(r"(alice|bob) +│ run \S+: complete after", out)) == 2
    assert re.search(r"bob +│ .*waiting for a slot: .*(taken|held by)", out)
    assert "POST /v1/pre-reboot: 409 no slot free in group computes" in out
    # While they ran, the slots list named the actor holding the one compute slot.
    while_running, _, after = out.partition("No slot is left held")
    assert re.search(r"role=compute +│ 1 +│ \S+@cmp\d +│ (rollout|fleetlock) +│ "
                     r"(alice|bob|fleetlock)@", while_running)  # fmt: skip
    assert "no disruption slots held by anyone" in after
