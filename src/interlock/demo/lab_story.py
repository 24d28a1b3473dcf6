"""The main demo: deferred restarts across a fleet, paid back with zero failed requests.

On a lab of real hosts (network namespaces with their own sshd, a real haproxy in front of
three API controllers, some compute hosts): interlock goes on every host, auto restarts go off,
a package-style restart is refused by the real invoke-rc.d on every host and recorded, the fleet
view shows the debt, and a rollout pays it back (controllers one at a time, drained from haproxy
and health-gated; then computes, canary first) while a load generator hammers the API through
haproxy. The load generator's count of failed requests is the verdict. The lab is torn down
at the end, whatever happens.

With `systemd`, every host boots systemd from its own Debian root file system: the APIs are
`lab-api.service` units behind Debian's haproxy.service, the refusals come from the real
deb-systemd-invoke, and the rollout restarts units through systemctl.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from interlock.demo.narrator import Narrator
from interlock.lab.load import LoadGenerator
from interlock.lab.scratch import running_lab
from interlock.lab.spec import LB_PORT

CONTROLLER_ROLLOUT = [
    "--limit", "controllers",
    "--max-unavailable", "role=1",
    "--drain", "--drain-port", "8080",
    "--gate", "http://{address}:8080/health", "--gate-passes", "3",
    "--soak", "2s",
]  # fmt: skip
COMPUTE_ROLLOUT = [
    "--limit", "computes",
    "--canary", "1", "--waves", "50%,100%",
    "--max-unavailable", "az=1",
]  # fmt: skip


def run_lab_demo(hosts: int = 8, controllers: int = 3, systemd: bool = False) -> int:
    narrator = Narrator()
    interlock = [sys.executable, "-m", "interlock.cli.main"]
    with tempfile.TemporaryDirectory(prefix="interlock-demo-") as tmp:
        workdir = Path(tmp)
        kind = "systemd as PID 1 on its own Debian root, " if systemd else ""
        narrator.step(
            f"A lab on this machine: {hosts} hosts in network namespaces, each with {kind}its own "
            f"sshd; {controllers} API controllers behind a real haproxy; the rest are compute hosts"
        )
        with running_lab(
            workdir / "lab",
            hosts=hosts,
            controllers=controllers,
            lbs=1,
            api_delay_ms=20,
            systemd=hosts if systemd else 0,
        ) as lab:
            inventory = str(lab.inventory_path)
            journal = str(workdir / "journal.sqlite")

            def cli(*args: str, check: bool = True) -> int:
                shown = " ".join(["interlock", *args]).replace(inventory, "inventory.yaml")
                shown = shown.replace(journal, "journal.sqlite")
                return narrator.run([*interlock, *args], shown=shown, check=check)

            cli("lab", "status", "--dir", str(lab.directory))

            narrator.step("interlock goes on every host: its gate becomes /usr/sbin/policy-rc.d")
            cli("fleet", "install", "-i", inventory, "--no-chain")

            narrator.step("The operator turns automatic restarts off, fleet-wide")
            cli("fleet", "run", "-i", inventory, "--", "interlock", "auto-restarts", "off")

            asker = "deb-systemd-invoke" if systemd else "invoke-rc.d"
            narrator.step(
                f"A package update asks to restart the services (the real {asker} on each "
                "host): every gate refuses and records it"
            )
            api_restart = (
                ["deb-systemd-invoke", "restart", "lab-api.service"]
                if systemd
                else ["invoke-rc.d", "lab-api", "restart"]
            )
            cli("fleet", "run", "-i", inventory, "--limit", "controllers", "--", *api_restart)
            cli("fleet", "run", "-i", inventory, "--limit", "computes", "--",
                "invoke-rc.d", "cron", "restart")  # fmt: skip

            narrator.step("The fleet view: what every host owes, read over SSH in one pass")
            cli("fleet", "status", "-i", inventory, check=False)

            lb = next(h for h in lab.state().hosts if h.role == "lb")
            url = f"http://{lb.address}:{LB_PORT}/"
            narrator.step(f"Traffic: 20 keep-alive clients hammer the API through haproxy ({url})")
            with LoadGenerator([url], concurrency=20) as load:
                time.sleep(2)
                narrator.note(f"load running: {load.snapshot().requests_per_second:.0f} req/s")

                narrator.step("The plan for the controllers, then the run: one at a time, "
                              "drained from haproxy, health-gated, re-enabled")  # fmt: skip
                cli("rollout", "plan", "-i", inventory, *CONTROLLER_ROLLOUT)
                cli("rollout", "run", "-i", inventory, *CONTROLLER_ROLLOUT,
                    "--journal", journal, "--yes", "--no-progress")  # fmt: skip

                narrator.step("Then the computes: a canary first, then waves, one per zone")
                cli("rollout", "run", "-i", inventory, *COMPUTE_ROLLOUT,
                    "--journal", journal, "--yes", "--no-progress")  # fmt: skip
                time.sleep(1)
            report = load.report()

            narrator.step("The verdict of the load generator")
            narrator.note(
                f"{report.sent} requests in {report.duration:.1f}s "
                f"({report.requests_per_second:.0f} req/s), {report.failed} failed; "
                f"latency p50 {report.p50_ms:.0f} ms, p99 {report.p99_ms:.0f} ms"
            )

            narrator.step("Nothing is owed any more")
            cli("fleet", "status", "-i", inventory, check=False)
            narrator.step("The lab is torn down")
        narrator.note("lab down: namespaces, mounts, bridge and processes removed")
    narrator.finish()
    return 0 if report.failed == 0 else 1
