"""The FleetLock endpoint as a FleetLock client speaks to it, sharing slots with a rollout."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordination.local_etcd import etcdctl
from rollout.rollout_processes import CLI, Processes, free_port, wait_until


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


def post(port: int, path: str, body: object, *, header: bool = True) -> tuple[int, dict[str, str]]:
    """A FleetLock request as Zincati sends it: POST, JSON body, the protocol header."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if header:
            headers["fleet-lock-protocol"] = "true"
        connection.request("POST", path, json.dumps(body).encode(), headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def params(client: str, group: str) -> dict[str, dict[str, str]]:
    return {"client_params": {"id": client, "group": group}}


def serve(processes: Processes, etcd_url: str, *groups: str) -> int:
    port = free_port()
    argv = [*CLI, "fleetlock", "serve", "--coordination", etcd_url, "--listen",
            f"127.0.0.1:{port}"]  # fmt: skip
    for group in groups:
        argv += ["--group", group]
    server = processes.start(argv, "fleetlock.log")

    def listening() -> bool:
        assert server.poll() is None, (processes.directory / "fleetlock.log").read_text()
        try:
            post(port, "/v1/steady-state", params("probe", "nosuchgroup"))
        except OSError:
            return False
        return True

    wait_until(listening, "fleetlock to listen")
    return port


def test_protocol(etcd_url: str, processes: Processes) -> None:
    port = serve(processes, etcd_url, "default=1", "workers=2")
    # Header, body and group are checked; errors are JSON with a kind and a value.
    status, error = post(port, "/v1/pre-reboot", params("m1", "default"), header=False)
    assert (status, error["kind"]) == (400, "missing_header")
    status, error = post(port, "/v1/pre-reboot", {"client_params": {"id": "m1"}})
    assert (status, error["kind"]) == (400, "invalid_body")
    status, error = post(port, "/v1/pre-reboot", params("m1", "nosuch"))
    assert (status, error["kind"]) == (404, "unknown_group")
    assert "default, workers" in error["value"]
    # A slot, recursively: the holder taking it again succeeds, another client does not.
    assert post(port, "/v1/pre-reboot", params("m1", "default")) == (200, {})
    assert post(port, "/v1/pre-reboot", params("m1", "default")) == (200, {})
    status, error = post(port, "/v1/pre-reboot", params("m2", "default"))
    assert (status, error["kind"]) == (409, "failed_lock")
    assert "fleetlock@m1" in error["value"]
    # Only the owner unlocks: m2's steady-state succeeds (it holds nothing) and frees nothing.
    assert post(port, "/v1/steady-state", params("m2", "default")) == (200, {})
    held = etcdctl(
        etcd_url, "get", "--prefix", "/interlock/slots/fleetlock=default/", "--keys-only"
    )
    assert held.split() == ["/interlock/slots/fleetlock=default/fleetlock@m1"]
    assert post(port, "/v1/steady-state", params("m1", "default")) == (200, {})
    assert post(port, "/v1/steady-state", params("m1", "default")) == (200, {})
    assert post(port, "/v1/pre-reboot", params("m2", "default")) == (200, {})
    # Groups are separate budgets: two slots in workers.
    assert post(port, "/v1/pre-reboot", params("m3", "workers"))[0] == 200
    assert post(port, "/v1/pre-reboot", params("m4", "workers"))[0] == 200
    assert post(port, "/v1/pre-reboot", params("m5", "workers"))[0] == 409
    for client, group in (("m2", "default"), ("m3", "workers"), ("m4", "workers")):
        assert post(port, "/v1/steady-state", params(client, group)) == (200, {})
    assert etcdctl(etcd_url, "get", "--prefix", "/interlock/slots/") == ""


def overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, change in moments:
        current += change
        most = max(most, current)
    return most


def test_fleetlock_clients_and_a_rollout_share_one_budget(
    etcd_url: str, processes: Processes, tmp_path: Path
) -> None:
    port = serve(processes, etcd_url, "workers=1:role=compute")
    marks = tmp_path / "marks"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "hosts:\n" + "".join(f"  c{n}: {{address: 127.0.0.1, labels: {{role: compute}}}}\n"
                             for n in range(1, 5))
    )  # fmt: skip
    action = f"echo start $(date +%s.%N) >> {marks}; sleep 0.5; echo end $(date +%s.%N) >> {marks}"
    # A FleetLock host reboots first: it holds the group's only slot.
    assert post(port, "/v1/pre-reboot", params("node9", "workers")) == (200, {})
    rebooting_since = time.time()
    reboots: list[tuple[float, float]] = []
    log = tmp_path / "rollout.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [*CLI, "rollout", "run", "-i", str(inventory), "--transport", "local",
             "--command", f"sh -c '{action}'", "--max-unavailable", "role=1", "--concurrency", "2",
             "--no-restarted-gate", "--yes", "--no-progress", "--coordination", etcd_url],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
        )  # fmt: skip
    try:
        waiting = "waiting for a slot: role=compute: 1 of 1 slot(s) taken (fleetlock@node9)"
        wait_until(lambda: waiting in log.read_text(), "the rollout to wait", timeout=60)
        assert not marks.exists(), "the rollout disrupted a host while FleetLock held the slot"
        assert post(port, "/v1/steady-state", params("node9", "workers")) == (200, {})
        reboots.append((rebooting_since, time.time()))
        # While the rollout runs, another FleetLock host must wait its turn.
        wait_until(marks.exists, "the rollout to start", timeout=30)
        refused = 0
        while run.poll() is None:
            status, _ = post(port, "/v1/pre-reboot", params("node8", "workers"))
            if status == 200:
                taken = time.time()
                time.sleep(0.2)
                post(port, "/v1/steady-state", params("node8", "workers"))
                reboots.append((taken, time.time()))
                break
            refused += 1
            time.sleep(0.05)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = log.read_text()
    assert run.returncode == 0, output
    assert refused > 0
    lines = [line.split() for line in marks.read_text().splitlines()]
    starts = [float(f[1]) for f in lines if f[0] == "start"]
    ends = [float(f[1]) for f in lines if f[0] == "end"]
    assert len(starts) == len(ends) == 4
    assert len(reboots) == 2
    assert overlaps([*zip(starts, ends, strict=True), *reboots]) == 1


def test_server_errors(tmp_path: Path) -> None:
    groups = tmp_path / "groups"
    groups.write_text("default=1\n# two at a time\nworkers=2:role=compute\nworkers 3\n")
    base = [*CLI, "fleetlock", "serve", "--listen", f"127.0.0.1:{free_port()}"]

    def serve_once(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_COORDINATION"}
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, check=False, env=env
        )

    bad = serve_once("--coordination", "etcd://127.0.0.1:1", "--groups", str(groups))
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        f"interlock: {groups} line 4: 'workers 3': expected NAME=LIMIT or NAME=LIMIT:LABEL=VALUE",
    )
    groups.write_text("default=1\n")
    down = serve_once("--coordination", "etcd://127.0.0.1:1", "--groups", str(groups))
    assert (down.returncode, down.stderr.strip()) == (
        1,
        "interlock: coordination etcd://127.0.0.1:1: no etcd member answered "
        "(127.0.0.1:1: connection refused)",
    )
    local = serve_once("--group", "default=1")
    assert local.returncode == 2
    assert "fleetlock serve needs --coordination etcd://" in local.stderr
