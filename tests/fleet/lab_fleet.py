"""Driving `interlock fleet` against a lab: the CLI as a process, SSH to hosts, inventory copies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml

import interlock as interlock_package
from interlock.lab.lab import Lab

T = TypeVar("T")

# Events as the OpenStack charms' PyYAML versions wrote them (same data, three layouts).
CHARM_BLOCK = """\
action: restart
policy_requestor_name: neutron-gateway
policy_requestor_type: charm
reason: Package update
service: openvswitch-switch
timestamp: 1619175335
"""
CHARM_BLOCK_QUOTED = """\
action: restart
policy_requestor_name: neutron-gateway
policy_requestor_type: charm
reason: 'File(s) changed: /etc/neutron/neutron.conf'
service: neutron-l3-agent
timestamp: 1619181884
"""
CHARM_FLOW_ONE_LINE = (
    "{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm, "
    "reason: Package update, service: openvswitch-switch, timestamp: 1619175335}\n"
)
CHARM_FLOW_TWO_LINES = (
    "{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm,\n"
    "  reason: Package update, service: openvswitch-switch, timestamp: 1619175335}\n"
)
CHARM_FLOW_FOLDED = """\
{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm,
  reason: 'File(s) changed: /etc/neutron/dhcp_agent.ini, /etc/neutron/neutron.conf',
  service: neutron-dhcp-agent, timestamp: 1619181884}
"""

# (host, service, action, reason, requestor): what a status row is about.
Row = tuple[str, str, str, str, str]


def interlock(
    *args: str, package: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The `interlock` command as an operator runs it (from the copy in `package`, if given)."""
    env = {**os.environ, "PYTHONPATH": str(package)} if package is not None else None
    return subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def package_snapshot(destination: Path) -> Path:
    """A copy of the interlock package: installs from it build the same zipapp every time,
    even while the working tree is being edited."""
    source = Path(interlock_package.__file__).parent
    shutil.copytree(source, destination / "interlock", ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def fleet_status(inventory: Path | str, limit: str) -> tuple[int, dict[str, Any]]:
    """`interlock fleet status --json`: exit status and the document."""
    result = interlock("fleet", "status", "-i", str(inventory), "--limit", limit, "--json")
    assert result.stdout.startswith("{"), f"no JSON (exit {result.returncode}): {result.stderr}"
    return result.returncode, json.loads(result.stdout)


def rows(document: dict[str, Any]) -> set[Row]:
    return {
        (
            host["host"],
            event["service"],
            event["action"],
            event["reason"],
            f"{event['policy_requestor_type']}:{event['policy_requestor_name']}",
        )
        for host in document["hosts"]
        for event in host["restarts"]
    }


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a `fleet status` table, as stripped cells."""
    return [[cell.strip() for cell in line.split("│")] for line in text.splitlines() if "│" in line]


def events_of(document: dict[str, Any], host: str) -> list[dict[str, Any]]:
    (entry,) = (h for h in document["hosts"] if h["host"] == host)
    events: list[dict[str, Any]] = entry["restarts"]
    return events


def ssh(lab: Lab, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`command` through the real OpenSSH client, as an operator on the host would run it."""
    return subprocess.run(
        lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=timeout, check=False
    )


def ssh_ok(lab: Lab, host: str, command: str) -> str:
    result = ssh(lab, host, command)
    assert result.returncode == 0, f"{host}: {command}: exit {result.returncode}: {result.stderr}"
    return result.stdout


def on_hosts(hosts: Sequence[str], fn: Callable[[str], T]) -> dict[str, T]:
    """fn on every host at once (a few at a time): {host: result}."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(hosts, pool.map(fn, hosts), strict=True))


def inventory_copy(
    lab: Lab,
    path: Path,
    *,
    known_hosts: Path | None = None,
    extra_hosts: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """The lab's inventory with another known_hosts file and/or more hosts, written to `path`."""
    document = yaml.load(lab.inventory_path.read_text(), Loader=yaml.CSafeLoader)
    if known_hosts is not None:
        document["known_hosts"] = str(known_hosts)
    document["hosts"].update(extra_hosts or {})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
