"""A lab where release upgrades really happen: per-host /usr, /opt and /var overlays, an apt
repository over HTTP on the lab bridge, v1 of the "ilu" packages installed, and a recipe.

lb1 runs haproxy in front of ctl1-ctl3 (backend `api`, port 8080); the controllers run the
ident API (ilu-ident-api, in place of the lab's own API) and the compute conductor, the computes
the telemetry, compute and net agents (visited once for the three projects); every host runs
`puppet`. ctl2 holds the VIP (/etc/ilu/vip).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab
from interlock.lab.spec import LB_ADMIN_PORT
from interlock.lb.runtime import RuntimeClient, TcpOpener
from upgrade.upgrade_packages import RepositoryServer, build_repositories

HERE = Path(__file__).parent
CLI = HERE / "upgrade_cli.py"
VIP_HOLDER = "ctl2"
SOURCES = "/etc/apt/sources.list.d/ilu.list"
ROLE_PACKAGES = {
    "controller": ["ilu-puppet", "ilu-ident", "ilu-compute-conductor"],
    "compute": ["ilu-puppet", "ilu-telemetry-agent", "ilu-compute-agent", "ilu-net-agent"],
    "network": ["ilu-puppet", "ilu-net-agent", "ilu-net-l3-agent"],
}
ROLE_SERVICES = {
    "controller": ["puppet", "ilu-ident-api", "ilu-compute-conductor"],
    "compute": ["puppet", "ilu-telemetry-agent", "ilu-compute-agent", "ilu-net-agent"],
    "network": ["puppet", "ilu-net-agent", "ilu-net-l3-agent"],
}

RECIPE = """\
# the lab's release 2: two projects, as the OpenStack recipe does them
recipe: ilu release 2
repository:
  file: {sources}
  content: "{line}"
roles: {{controller: controllers, compute: computes}}
visits: {{compute: once}}
vip_holder: {{command: [test, -e, /etc/ilu/vip]}}
drain: {{timeout: 20s}}
health: {{passes: 2, interval: 0.3s, deadline: 60s}}
estimates: {{install: 5s, db: 1s, apt_update: 2s, preinstall: 5s}}
prepare:
  concurrency: 8
  config_management: [puppet]
  dependencies: {{controller: [ilu-lib], compute: [ilu-lib]}}
projects:
  - name: ident
    backends: {{api: 8080}}
    db: {{sync: ilu-ident-manage db sync}}
    upgrade_check: ilu-ident-manage db check
    roles:
      controller:
        packages: [ilu-ident]
        services: [ilu-ident-api]
        health: ["http://{{address}}:8080/health"]
  - name: telemetry
    roles:
      compute: {{packages: [ilu-telemetry-agent], services: [ilu-telemetry-agent], concurrency: 2}}
  - name: compute
    db:
      expand: ilu-compute-manage db expand
      migrate: ilu-compute-manage db migrate
      contract: ilu-compute-manage db contract
      online_migrations: ilu-compute-manage online_data_migrations
      online_delay: 0.2s
    upgrade_check: ilu-compute-manage db check
    roles:
      controller:
        packages: [ilu-compute-conductor]
        services: [ilu-compute-conductor]
      compute:
        packages: [ilu-compute-agent]
        services: [ilu-compute-agent]
        concurrency: 2
        service_wait: 0.5s
  - name: net
    roles:
      compute: {{packages: [ilu-net-agent], services: [ilu-net-agent], concurrency: 2}}
"""


@dataclass
class UpgradeLab:
    lab: Lab
    server: RepositoryServer
    db: Path
    recipe: Path
    journal: Path
    work: Path

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.lab.state().hosts if h.role != "lb"]

    def role(self, host: str) -> str:
        return self.lab.state().host(host).role

    @property
    def lb_url(self) -> str:
        lb = next(h for h in self.lab.state().hosts if h.role == "lb")
        return f"http://{lb.address}:80/"

    def sh(self, host: str, script: str, timeout: float = 120) -> str:
        result = self.lab.exec(host, ["sh", "-c", script], timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"{host}: {script!r} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace')[-1500:]}"
            )
        return result.stdout.decode(errors="replace")

    def versions(self, host: str, packages: Sequence[str]) -> dict[str, str]:
        argv = ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *packages]
        result = self.lab.exec(host, argv, check=True)
        lines = result.stdout.decode().splitlines()
        return dict(line.split(" ", 1) for line in lines if line.strip())

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(CLI), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def upgrade_args(self, command: str, *extra: str) -> list[str]:
        return [
            "upgrade",
            command,
            str(self.recipe),
            "-i",
            str(self.inventory),
            *extra,
        ]

    def run_args(self, events: Path) -> list[str]:
        return [
            *self.upgrade_args("run"),
            "--yes",
            "--no-progress",
            "--journal",
            str(self.journal),
            "--events",
            str(events),
        ]

    def schema_log(self, project: str) -> list[str]:
        path = self.db / f"{project}.log"
        return path.read_text().splitlines() if path.exists() else []

    def service_events(self, host: str, service: str) -> list[tuple[str, float]]:
        """The service's starts and stops on the host, as its init script recorded them."""
        text = self.sh(host, f"cat /var/log/ilu/{service}.events 2>/dev/null || true")
        return [(kind, float(when)) for kind, when in (line.split() for line in text.splitlines())]

    def starts(self, host: str, service: str) -> list[str]:
        return self.sh(host, f"cat /var/log/ilu/{service}.starts 2>/dev/null || true").split("\n")

    def held(self, host: str) -> str:
        return self.sh(
            host, "ls /var/lib/interlock/held /etc/policy-rc.d 2>/dev/null | grep -v '^/' || true"
        ).strip()


def lb_servers(lab: Lab) -> dict[str, str]:
    """Each API server's haproxy status (UP, DRAIN, MAINT, DOWN...), via the TCP admin socket."""
    lb = next(h for h in lab.state().hosts if h.role == "lb")

    async def ask() -> dict[str, str]:
        client = RuntimeClient(lb.name, TcpOpener(lb.address, LB_ADMIN_PORT))
        try:
            rows = await client.show_stat()
        finally:
            await client.close()
        return {row.name: row.status for row in rows if row.proxy == "api" and row.kind == "server"}

    return asyncio.run(ask())


def wait_all_up(lab: Lab, timeout: float = 30.0) -> None:
    """Until haproxy has every API server UP (its health checks need a few rounds)."""
    deadline = time.monotonic() + timeout
    while set(lb_servers(lab).values()) != {"UP"}:
        assert time.monotonic() < deadline, lb_servers(lab)
        time.sleep(0.2)


def events(path: Path) -> list[dict[str, object]]:
    """The JSON-lines events so far (a line still being written is left for the next read)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return found


def prepare_host(lab: Lab, host: str, role: str, line: str, db: Path) -> None:
    """v1 sources, the database location, v1 packages installed (and their services running)."""
    mounts = lab.exec(host, ["findmnt", "-n", "-o", "FSTYPE", "/usr"], check=True).stdout
    # Everything below changes this host's /usr and /etc only: refuse unless they are its own.
    assert mounts.strip() == b"overlay", f"{host}: /usr is not the host's own overlay"
    address = lab.state().host(host).address
    script = f"""
set -e
# A plain Debian host: no policy-rc.d, so invoke-rc.d follows the rc links.
rm -f /usr/sbin/policy-rc.d /etc/apt/sources.list.d/*
: > /etc/apt/sources.list
printf '%s' '{line}' > {SOURCES}
mkdir -p /etc/ilu
echo 'DB_DIR={db}' > /etc/ilu/ilu.conf
echo 'BIND={address}:8080' > /etc/default/ilu-ident-api
if [ -x /etc/init.d/lab-api ]; then
    /etc/init.d/lab-api stop >/dev/null
    update-rc.d -f lab-api remove >/dev/null 2>&1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q {" ".join(ROLE_PACKAGES[role])} >/dev/null
"""
    if host == VIP_HOLDER:
        script += "touch /etc/ilu/vip\n"
    result = lab.exec(host, ["sh", "-c", script], timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{host}: setup failed: {result.stderr.decode(errors='replace')}")


@contextmanager
def upgrade_lab(work: Path, computes: int = 2) -> Iterator[UpgradeLab]:
    repo = work / "repo"
    build_repositories(repo)
    db = work / "db"
    db.mkdir()
    with running_lab(
        work / "lab", hosts=1 + 3 + computes, controllers=3, lbs=1, package_overlays=True
    ) as lab:
        before = processes.snapshot(lab.processes())
        server = RepositoryServer(repo, lab.state().spec.gateway)
        try:
            hosts = [h for h in lab.state().hosts if h.role != "lb"]
            line = server.line("v1")
            with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
                list(pool.map(lambda h: prepare_host(lab, h.name, h.role, line, db), hosts))
            first = hosts[0].name
            lab.exec(first, ["ilu-ident-manage", "db", "sync"], check=True)
            lab.exec(first, ["ilu-compute-manage", "db", "sync"], check=True)
            wait_all_up(lab)
            recipe = work / "ilu.yaml"
            recipe.write_text(
                RECIPE.format(sources=SOURCES, line=server.line("v2").replace("\n", "\\n"))
            )
            yield UpgradeLab(lab, server, db, recipe, work / "journal.sqlite", work)
        finally:
            server.close()
        before |= processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"
