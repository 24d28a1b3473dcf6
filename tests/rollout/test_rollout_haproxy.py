"""Drain and enable through a real haproxy in front of real HTTP backends on 127.0.0.0/8.

Three "controllers" listen on 127.0.0.11-13; their restart is a real stop (SIGTERM) and start of
the lab API. Under load through haproxy, a rollout with drain loses no request; a failure after
the drain puts the server back (or leaves it drained, when the spec says so).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from interlock.fleet.inventory_file import load_inventory
from interlock.lab.load import LoadGenerator
from interlock.lb.runtime import RuntimeClient, UnixSocketOpener
from interlock.rollout.events import EventBus
from interlock.rollout.journal import Journal
from interlock.rollout.runs import execute, plan_for, settings_for, start_run
from interlock.rollout.spec import load_spec
from rollout.rollout_processes import LAB_API, PYTHON, Processes, free_port, wait_until

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")

NAMES = ("ctl1", "ctl2", "ctl3")

RESTART = """\
#!/bin/sh
# restart NAME ADDRESS PORT: stop the API gracefully, start a new one, wait until it listens
dir=$(dirname "$0"); pidfile="$dir/$1.pid"
if [ -s "$pidfile" ]; then
  pid=$(cat "$pidfile"); kill -TERM "$pid"
  # Until it is gone (or a zombie: the first one's parent is the test, which reaps it later).
  while [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]; do
    sleep 0.02
  done
fi
rm -f "$pidfile"
setsid {python} -I {api} --bind "$2:$3" --pidfile "$pidfile" --name "$1" \\
  >> "$dir/$1.log" 2>&1 < /dev/null &
tries=0
while [ ! -s "$pidfile" ]; do
  tries=$((tries + 1)); [ "$tries" -lt 250 ] || exit 1
  sleep 0.02
done
"""


class Cluster:
    def __init__(self, directory: Path, processes: Processes) -> None:
        self.directory = directory
        self.port = free_port()
        self.front = free_port()
        self.socket = directory / "admin.sock"
        restart = directory / "restart.sh"
        restart.write_text(RESTART.format(python=PYTHON, api=LAB_API))
        restart.chmod(0o755)
        for index, name in enumerate(NAMES, start=1):
            processes.pidfiles.append(directory / f"{name}.pid")
            processes.api(name, f"127.0.0.{10 + index}", self.port)
        config = directory / "haproxy.cfg"
        config.write_text(
            "global\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "    option httpchk GET /health\n"
            "    default-server check inter 200ms fall 2 rise 2\n"
            "frontend api\n"
            f"    bind 127.0.0.1:{self.front}\n"
            "    default_backend api\n"
            "backend api\n"
            "    balance roundrobin\n"
            + "".join(
                f"    server {name} 127.0.0.{10 + index}:{self.port}\n"
                for index, name in enumerate(NAMES, start=1)
            )
        )
        processes.start(["haproxy", "-db", "-f", str(config)], "haproxy.log")
        wait_until(self.socket.exists, "the haproxy admin socket")
        wait_until(lambda: self.statuses() == dict.fromkeys(NAMES, "UP"), "servers UP")
        self.inventory = directory / "inventory.yaml"
        self.inventory.write_text(
            "hosts:\n"
            + "".join(
                f"  {name}: {{address: 127.0.0.{10 + index}, labels: {{role: controller}}}}\n"
                for index, name in enumerate(NAMES, start=1)
            )
            + f"loadbalancers:\n  lb: {{socket: {self.socket}}}\n"
        )

    def statuses(self) -> dict[str, str]:
        async def ask() -> dict[str, str]:
            client = RuntimeClient("lb", UnixSocketOpener(str(self.socket)))
            rows = await client.show_stat()
            return {
                row.name: row.status for row in rows if row.kind == "server" and row.proxy == "api"
            }

        return asyncio.run(ask())

    def spec(self, command: str, extra: str = "") -> Path:
        path = self.directory / "spec.yaml"
        path.write_text(
            "transport: local\n"
            f"action: {{command: {command!r}}}\n"
            "schedule: {max_unavailable: {role: 1}}\n"
            f"drain: {{port: {self.port}, timeout: 10s{extra}}}\n"
            "post_gates:\n"
            f"  probes: [{{http: 'http://{{address}}:{self.port}/health'}}]\n"
            "  passes: 2\n"
            "  interval: 100ms\n"
            "  soak: 300ms\n"
        )
        return path

    def rollout(self, spec: Path) -> tuple[str, Journal]:
        loaded = load_spec(spec)
        inventory = load_inventory(self.inventory)
        journal = Journal(self.directory / "journal.sqlite")
        run = start_run(journal, plan_for(loaded, inventory), settings_for(loaded, inventory))
        outcome = asyncio.run(execute(journal, run, EventBus()))
        return outcome.state, journal


@pytest.fixture
def cluster(tmp_path: Path, processes: Processes) -> Cluster:
    return Cluster(tmp_path, processes)


def test_a_rolling_restart_with_drain_loses_no_request(cluster: Cluster) -> None:
    before = {name: (cluster.directory / f"{name}.pid").read_text() for name in NAMES}
    command = f"{cluster.directory}/restart.sh {{name}} {{address}} {cluster.port}"
    with LoadGenerator([f"http://127.0.0.1:{cluster.front}/api"], concurrency=8) as load:
        state, journal = cluster.rollout(cluster.spec(command))
    report = load.report()
    assert state == "complete"
    assert report.failed == 0, report.failures
    assert report.ok > 50
    after = {name: (cluster.directory / f"{name}.pid").read_text() for name in NAMES}
    assert all(before[name] != after[name] for name in NAMES)
    run = journal.latest_run()
    for record in journal.hosts(run.id):
        steps = journal.steps(run.id, record.batch, record.host)
        assert [
            s for s in ("drain", "command", "health", "soak", "enable") if steps[s].state == "done"
        ]
        assert (steps["drain"].detail or "").startswith(f"drained lb:api/{record.host}")
        assert (steps["enable"].detail or "").startswith(f"enabled lb:api/{record.host}")
    journal.close()
    assert cluster.statuses() == dict.fromkeys(NAMES, "UP")


def test_a_failure_after_the_drain_puts_the_server_back(cluster: Cluster) -> None:
    state, journal = cluster.rollout(cluster.spec("false"))
    assert state == "paused"
    run = journal.latest_run()
    failed = [r for r in journal.hosts(run.id) if r.state == "failed"]
    assert [r.host for r in failed] == ["ctl1"]
    steps = journal.steps(run.id, failed[0].batch, "ctl1")
    assert steps["drain:undo"].state == "done"
    assert "undid drain" in (failed[0].detail or "")
    journal.close()
    wait_until(lambda: cluster.statuses()["ctl1"] == "UP", "ctl1 back UP")


def test_leave_drained_keeps_the_server_out_and_says_so(cluster: Cluster) -> None:
    state, journal = cluster.rollout(cluster.spec("false", ", on_failure: leave-drained"))
    assert state == "paused"
    run = journal.latest_run()
    record = next(r for r in journal.hosts(run.id) if r.state == "failed")
    assert "ctl1: its servers stay drained" in (record.detail or "")
    journal.close()
    assert cluster.statuses()["ctl1"] == "DRAIN"
    assert cluster.statuses()["ctl2"] == "UP"
