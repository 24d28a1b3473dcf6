"""Driving `interlock rollout` against a lab: the CLI as a process, restarts counted on the hosts,
haproxy read raw from its admin socket, events read back from the JSON-lines file.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.lab_fleet import interlock, ssh
from interlock.lab.haproxy import BACKEND
from interlock.lab.lab import Lab
from interlock.lab.spec import LB_ADMIN_PORT

CONTROLLERS = ("ctl1", "ctl2", "ctl3")
DENIED = "invoke-rc.d: policy-rc.d denied execution of restart."
NOTHING_DEFERRED = "No restarts or hooks deferred"
API_CONFIG = "/etc/lab-api/lab-api.conf"
API_PIDFILE = "/run/lab-api.pid"
ACTIONS_LOG = "/var/log/lab-api.actions"
# The init script sources its config on every call: one line per action is an independent count
# of how often the API was (re)started, whoever asked for it.
ACTION_COUNTER = (
    "# Appended by the rollout lab tests: every action on the service, one per line.\n"
    f'echo "$1" >> {ACTIONS_LOG}\n'
)
# Actions that stop or start the daemon (status and the like do not count).
LIFECYCLE = ("start", "stop", "restart", "force-reload", "try-restart")
# The per-host action, gates and schedule of the zero-downtime restart (drain or not is added).
RESTART_API = (
    "--limit", "controllers",
    "--drain-port", "8080",
    "--gate", "http://{address}:8080/health",
    "--gate-passes", "3",
    "--soak", "2s",
    "--max-unavailable", "role=1",
)  # fmt: skip


def rollout(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`interlock rollout ARGS` as an operator runs it: a CompletedProcess."""
    return interlock("rollout", *args, timeout=timeout)


def count_actions(lab: Lab, host: str) -> None:
    """Make the lab API's init script log every action it is asked to do."""
    config = lab.read_host_file(host, API_CONFIG).decode()
    lab.write_host_file(host, API_CONFIG, config + ACTION_COUNTER)
    lab.write_host_file(host, ACTIONS_LOG, "")


def lifecycle_actions(lab: Lab, host: str) -> list[str]:
    """start/stop/restart actions the init script ran so far, in order."""
    lines = lab.read_host_file(host, ACTIONS_LOG).decode().split()
    return [line for line in lines if line in LIFECYCLE]


def api_pid(lab: Lab, host: str) -> int:
    """The running lab API's pid on `host` (its init script says it runs, or this fails)."""
    result = ssh(lab, host, f"/etc/init.d/lab-api status >&2 && cat {API_PIDFILE}")
    assert result.returncode == 0, f"{host}: lab-api is not running: {result.stderr}"
    return int(result.stdout.strip())


def deny_restart(lab: Lab, host: str, service: str) -> None:
    """A package-style `invoke-rc.d SERVICE restart` on the host, which its gate must refuse."""
    result = ssh(lab, host, f"invoke-rc.d {service} restart")
    assert result.returncode == 0, f"{host}: {result.stderr}"
    assert DENIED in result.stderr, f"{host}: {result.stdout} {result.stderr}"


def host_status(lab: Lab, host: str) -> tuple[int, str]:
    """`interlock status` on the host: exit status and its line."""
    result = ssh(lab, host, "interlock status")
    return result.returncode, result.stdout.strip()


# --- haproxy, read without interlock's own client ----------------------------------------------


def admin_command(address: str, command: str, timeout: float = 5.0) -> str:
    """One runtime-API command on haproxy's TCP admin socket; the whole answer."""
    with socket.create_connection((address, LB_ADMIN_PORT), timeout=timeout) as conn:
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@dataclass(frozen=True)
class ServerState:
    status: str  # show stat: UP, DOWN, DRAIN, MAINT, ...
    admin: int  # show servers state: bit 1 = forced maintenance, bit 8 = drain


def backend_servers(address: str) -> dict[str, ServerState]:
    """The lab backend's servers on the haproxy at `address`."""
    text = admin_command(address, "show stat").removeprefix("# ")
    status = {
        row["svname"]: row["status"]
        for row in csv.DictReader(text.splitlines())
        if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
    }
    lines = admin_command(address, f"show servers state {BACKEND}").splitlines()
    header = lines[1].removeprefix("# ").split()
    admin = {}
    for line in lines[2:]:
        if line.strip():
            fields = dict(zip(header, line.split(), strict=False))
            admin[fields["srv_name"]] = int(fields["srv_admin_state"])
    assert set(status) == set(admin), (status, admin)
    return {name: ServerState(status[name], admin[name]) for name in status}


def all_in_rotation(servers: dict[str, ServerState]) -> bool:
    return all(s.status == "UP" and s.admin == 0 for s in servers.values())


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- what the run recorded ---------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.endswith("}"):  # a line being written is not complete yet
            events.append(json.loads(line))
    return events


def events_of_run(path: Path, run: str) -> list[dict[str, Any]]:
    return [event for event in read_events(path) if event["run"] == run]


def step_order(events: Sequence[dict[str, Any]], host: str) -> list[str]:
    return [e["step"] for e in events if e["kind"] == "step-started" and e.get("host") == host]


def run_status(journal: Path, run: str | None = None) -> dict[str, Any]:
    """`interlock rollout status --json` of `run` (default: the latest)."""
    result = rollout("status", *([run] if run else []), "--journal", str(journal), "--json")
    assert result.stdout.startswith("{"), f"exit {result.returncode}: {result.stderr}"
    document: dict[str, Any] = json.loads(result.stdout)
    return document
