"""Several operators on a lab with a 3-member etcd: one budget per group, whoever acts.

Every disruption is recorded on the host itself: the action appends `start`/`end` lines with
the time to /var/log/disruptions on the host (its private /var/log), and the test reads them
back from every host to count how many hosts were disrupted at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordination.local_etcd import etcdctl
from interlock.lab import etcd
from interlock.lab.errors import LabError
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab
from rollout.rollout_processes import CLI, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

COMPUTES = ("cmp1", "cmp2", "cmp3", "cmp4", "cmp5")
LOG = "/var/log/disruptions"
PAUSE = "/etc/disruption-seconds"  # how long the action keeps a host disrupted
ACTION = (
    f"sh -c 'echo start $(date +%s.%N) $$ >> {LOG}; sleep $(cat {PAUSE}); "
    f"echo end $(date +%s.%N) >> {LOG}'"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    directory = tmp_path_factory.mktemp("etcdlab")
    with running_lab(directory, hosts=8, controllers=3, lbs=0) as built:
        etcd.start(built, ["ctl1", "ctl2", "ctl3"])
        yield built
    left = built.leftovers()
    assert not left, f"lab down left: {left}"


@pytest.fixture
def url(lab: Lab) -> Iterator[str]:
    for host in COMPUTES:
        lab.write_host_file(host, LOG, "")
        lab.write_host_file(host, PAUSE, "0.3\n")
    yield etcd.url(lab)
    for host in ("ctl1", "ctl2", "ctl3"):
        if not etcd.member_pids(lab, host):
            etcd.restart_member(lab, host)


def disruptions(lab: Lab) -> dict[str, list[tuple[float, float | None]]]:
    """Per host, each disruption as (start, end); end None while it lasts."""
    found: dict[str, list[tuple[float, float | None]]] = {}
    for host in COMPUTES:
        spans: list[tuple[float, float | None]] = []
        for line in lab.read_host_file(host, LOG).decode().splitlines():
            what, moment = line.split()[:2]
            if what == "start":
                spans.append((float(moment), None))
            else:
                spans[-1] = (spans[-1][0], float(moment))
        found[host] = spans
    return found


def most_at_once(spans: list[tuple[float, float | None]]) -> int:
    moments = sorted(
        [(start, 1) for start, _ in spans] + [(end or float("inf"), -1) for _, end in spans]
    )
    most = current = 0
    for _, change in moments:
        current += change
        most = max(most, current)
    return most


class Operator:
    """One operator: own journal (own XDG state), own `interlock rollout` processes."""

    def __init__(self, lab: Lab, directory: Path, name: str) -> None:
        self.lab = lab
        self.state = directory / name
        self.log = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*CLI, "rollout", *args, "--yes", "--no-progress"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "XDG_STATE_HOME": str(self.state)},
            )
        return self.process

    def run(self, limit: str, url: str, *extra: str) -> subprocess.Popen[bytes]:
        return self.start(
            "run", "-i", str(self.lab.inventory_path), "--limit", limit, "--command", ACTION,
            "--max-unavailable", "role=1", "--concurrency", "3", "--no-restarted-gate",
            "--coordination", url, *extra,
        )  # fmt: skip

    def wait(self, timeout: float = 120) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.log.name} did not finish:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def operators(lab: Lab, tmp_path: Path) -> Iterator[tuple[Operator, Operator]]:
    pair = (Operator(lab, tmp_path, "alice"), Operator(lab, tmp_path, "bob"))
    try:
        yield pair
    finally:
        for operator in pair:
            operator.close()


def test_members_go_on_controllers_first(lab: Lab) -> None:
    assert etcd.member_hosts(lab, 3) == ["ctl1", "ctl2", "ctl3"]
    assert etcd.member_hosts(lab, 4) == ["ctl1", "ctl2", "ctl3", "cmp1"]
    assert [h for h in ("ctl1", "ctl2", "ctl3") if etcd.member_pids(lab, h)] == [
        "ctl1", "ctl2", "ctl3",
    ]  # fmt: skip
    with pytest.raises(LabError, match="--etcd 9: the lab has only 8 controller/compute hosts"):
        etcd.member_hosts(lab, 9)


def test_two_operators_never_exceed_a_shared_limit(
    lab: Lab, url: str, operators: tuple[Operator, Operator]
) -> None:
    alice, bob = operators
    for host in COMPUTES:
        lab.write_host_file(host, PAUSE, "0.6\n")  # long enough that the two runs overlap
    alice.run("cmp1:cmp2:cmp3", url + "?ttl=4")
    bob.run("cmp3:cmp4:cmp5", url + "?ttl=4")
    assert alice.wait() == 0, alice.output()
    assert bob.wait() == 0, bob.output()
    seen = disruptions(lab)
    assert [len(seen[h]) for h in COMPUTES] == [1, 1, 2, 1, 1]
    # role=compute allows 1: never two computes disrupted at once, across both operators.
    assert most_at_once([span for spans in seen.values() for span in spans]) == 1
    waited = alice.output() + bob.output()
    assert "waiting for a slot: role=compute: 1 of 1 slot(s) taken" in waited
    assert etcdctl(url, "get", "--prefix", "/interlock/slots/") == ""


def test_a_killed_operators_slot_is_kept_until_its_lease_expires(
    lab: Lab, url: str, operators: tuple[Operator, Operator]
) -> None:
    alice, bob = operators
    lab.write_host_file("cmp1", PAUSE, "30\n")
    alice.run("cmp1", url + "?ttl=3")
    wait_until(lambda: bool(disruptions(lab)["cmp1"]), "alice to disrupt cmp1", timeout=60)
    bob.run("cmp2", url + "?ttl=3")
    wait_until(lambda: "waiting for a slot" in bob.output(), "bob to wait", timeout=60)
    # Bob's status shows who holds what, whoever it is.
    status = subprocess.run(
        [*CLI, "rollout", "status", "--coordination", url, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "XDG_STATE_HOME": str(bob.state)},
    )  # fmt: skip
    holdings = json.loads(status.stdout)["holdings"]
    assert [(h["group"], h["host"], h["kind"], h["live"]) for h in holdings] == [
        ("role=compute", "cmp1", "rollout", True)
    ]
    assert holdings[0]["run"] != json.loads(status.stdout)["run"]  # alice's run, not bob's
    assert alice.process is not None
    alice.process.send_signal(signal.SIGKILL)
    alice.wait()
    # Until her lease expires (nobody renews it now), her slot stays and bob does not start.
    # cmp2 is read before etcd: a slot still there then was there all along since the kill.
    checks = 0
    while True:
        bob_started = disruptions(lab)["cmp2"]
        slot = etcdctl(
            url, "get", "--prefix", "/interlock/slots/role=compute/", "--print-value-only"
        )
        if not slot.strip() or json.loads(slot.splitlines()[0])["host"] != "cmp1":
            break
        assert bob_started == [], "bob disrupted cmp2 while alice's slot was alive"
        checks += 1
        time.sleep(0.05)
    # Alice was dead before the first check: a slot seen then outlived her process.
    assert checks >= 1, "alice's slot vanished with her process, not with her lease"
    # Then bob proceeds and completes.
    assert bob.wait() == 0, bob.output()
    assert len(disruptions(lab)["cmp2"]) == 1
    # Her action on cmp1 outlived her: end it (by its pid) so it writes nothing later.
    leftover = lab.read_host_file("cmp1", LOG).decode().split()[2]
    lab.exec("cmp1", ["kill", "-9", leftover])  # unless it has ended by itself meanwhile
    # Alice resumes her run (same run id): she takes a slot again and finishes cmp1.
    lab.write_host_file("cmp1", PAUSE, "0.1\n")
    alice.start("resume", "--coordination", url + "?ttl=3")
    assert alice.wait() == 0, alice.output()
    assert len(disruptions(lab)["cmp1"]) == 2
    assert etcdctl(url, "get", "--prefix", "/interlock/slots/") == ""


def test_one_member_down_goes_on_two_down_pause_until_they_return(
    lab: Lab, url: str, operators: tuple[Operator, Operator]
) -> None:
    alice, bob = operators
    for host in COMPUTES[:4]:
        lab.write_host_file(host, PAUSE, "0.5\n")
    alice.run("cmp1:cmp2:cmp3:cmp4", url + "?ttl=3")
    wait_until(lambda: bool(disruptions(lab)["cmp1"]), "the run to start", timeout=60)
    etcd.kill_member(lab, "ctl1")
    assert alice.wait() == 0, alice.output()
    assert "coordination lost" not in alice.output()
    etcd.restart_member(lab, "ctl1")

    bob.run("cmp1:cmp2:cmp3:cmp4", url + "?ttl=3", "--again")
    wait_until(lambda: len(disruptions(lab)["cmp1"]) == 2, "the second run to start", timeout=60)
    etcd.kill_member(lab, "ctl2")
    etcd.kill_member(lab, "ctl3")
    wait_until(lambda: "coordination lost" in bob.output(), "coordination lost", timeout=60)
    started = sum(len(spans) for spans in disruptions(lab).values())
    time.sleep(3)
    # No quorum: no new host is disrupted while etcd cannot vouch for the slots.
    assert sum(len(spans) for spans in disruptions(lab).values()) == started
    assert bob.process is not None and bob.process.poll() is None
    etcd.restart_member(lab, "ctl2")
    etcd.restart_member(lab, "ctl3")
    assert bob.wait() == 0, bob.output()
    assert "coordination regained" in bob.output()
    spans = [span for spans in disruptions(lab).values() for span in spans]
    assert len(spans) == 8
    assert most_at_once(spans) == 1
