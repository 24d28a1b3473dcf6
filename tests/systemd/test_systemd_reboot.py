"""A rolling reboot of a systemd host, with the default `systemctl reboot`. ctl1 is this module's.

Inside a lab host, `systemctl reboot` ends with systemd calling reboot(2) in the host's PID
namespace: the kernel ends that namespace's init (systemd) with SIGHUP, the lab's keeper starts
the host again from its overlay with a fresh /run, and systemd boots it. The kernel does not
reboot: boot_id and /proc/stat's btime stay the same, PID 1's start time is new, and that is what
the rollout's boot identity must see.

- Debian's own dbus postinst asks for the reboot (it writes /run/reboot-required and names dbus
  in /run/reboot-required.pkgs when a dbus-daemon runs); `interlock status` and `fleet status`
  say so;
- `rollout plan --reboot` shows a reboot instead of the deferred restarts;
- `rollout run --reboot` under load through lb1's haproxy drains ctl1, reboots it, waits for SSH
  from the new boot, sees lab-api, cron and ssh run again as new invocations, clears what the
  reboot paid, keeps the event of memcached (disabled: not started at boot), enables ctl1 again:
  0 failed requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.lab_fleet import fleet_status, interlock
from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.load import LoadGenerator
from interlock.lab.spec import LB_PORT
from rollout.lab_rollout import all_in_rotation, backend_servers, read_events, rollout
from systemd.conftest import sh, sh_ok, unit_property

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

HOST = "ctl1"
RAN = ("lab-api.service", "cron.service", "ssh.service")
ASK_FOR_REBOOT = "/var/lib/dpkg/info/dbus.postinst configure 1.14.0-1"
REINSTALL_OPENSSH = (
    "DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y --no-download openssh-server"
)
ROLL = (
    "--limit", HOST,
    "--reboot",
    "--drain", "--drain-port", "8080",
    "--gate", "http://{address}:8080/health",
    "--gate-passes", "2",
    "--soak", "1s",
)  # fmt: skip
STEPS = ["snapshot", "boot", "drain", "reboot", "came-back", "ledger", "health", "soak", "enable"]


def identity(lab: Lab) -> dict[str, str]:
    text = sh_ok(
        lab,
        HOST,
        "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat; "
        "sed -n 's/^btime //p' /proc/stat",
    )
    boot_id, init_start, btime = text.split()
    return {"boot_id": boot_id, "init_start": init_start, "btime": btime}


def owed(lab: Lab) -> list[str]:
    document = json.loads(sh_ok(lab, HOST, "interlock show --json"))
    return sorted({event["service"] for event in document["restarts"]})


@pytest.fixture(scope="module")
def host(sdlab: Lab, installed: object) -> Iterator[Lab]:
    sh_ok(sdlab, HOST, "interlock auto-restarts off")
    yield sdlab
    sh(sdlab, HOST, "interlock clear --all; interlock auto-restarts on")


def test_a_systemd_host_that_needs_a_reboot_says_so(host: Lab) -> None:
    # What an upgrade leaves: refused restarts (the exact dpkg message) and dbus's request.
    refused = sh(host, HOST, "deb-systemd-invoke restart lab-api.service cron.service")
    assert "returned 101, not running 'restart lab-api.service cron.service'" in refused.stderr
    sh_ok(host, HOST, "invoke-rc.d cron restart 2>/dev/null || true")
    sh_ok(host, HOST, "deb-systemd-invoke restart memcached.service")
    # openssh-server's upgrade: ssh, and the dormant ssh.socket and rescue-ssh.target.
    sh_ok(host, HOST, f"{REINSTALL_OPENSSH} 2>&1")
    assert unit_property(host, HOST, "memcached.service", "UnitFileState") == "disabled"
    assert sh_ok(host, HOST, "pidof dbus-daemon").strip()
    asked = sh(host, HOST, ASK_FOR_REBOOT)
    assert asked.returncode == 0 and "A reboot is required" in asked.stderr
    assert sh_ok(host, HOST, "cat /run/reboot-required.pkgs").split() == ["dbus"]

    status = sh(host, HOST, "interlock status")
    assert (status.returncode, status.stdout.strip()) == (
        1,
        "Services queued for restart: cron, lab-api, memcached, rescue-ssh.target, ssh, "
        "ssh.socket. Reboot required: dbus",
    )
    code, document = fleet_status(host.inventory_path, "controllers")
    assert code == 0
    needs = {h["host"]: h["reboot"]["needed"] for h in document["hosts"]}
    assert needs == {"ctl1": True, "ctl2": False}
    table = interlock("fleet", "status", "-i", str(host.inventory_path), "--limit", "controllers")
    assert "1 needing a reboot" in table.stdout


def test_plan_shows_a_reboot_instead_of_restarts(host: Lab) -> None:
    result = rollout("plan", "-i", str(host.inventory_path), *ROLL, "--json")
    assert result.returncode == 0, result.stderr
    [batch] = json.loads(result.stdout)["batches"]
    [plan] = batch["hosts"]
    assert [step["id"] for step in plan["steps"]] == STEPS
    reboot = next(step for step in plan["steps"] if step["id"] == "reboot")
    assert reboot["action"]["argv"] == ["systemctl", "reboot"]
    text = rollout("plan", "-i", str(host.inventory_path), *ROLL).stdout
    assert "reboot instead of restarting (it pays every deferred restart)" in text
    assert "$ systemctl reboot" in text


@pytest.fixture(scope="module")
def rolled(host: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("systemd-reboot")
    before = {
        "identity": identity(host),
        "invocations": {u: unit_property(host, HOST, u, "InvocationID") for u in RAN},
        "init": host.state().host(HOST).pid,
        "owed": owed(host),
    }
    lb = host.state().host("lb1").address
    argv = (
        "run", "-i", str(host.inventory_path), *ROLL, "--yes",
        "--journal", str(workdir / "journal.sqlite"), "--events", str(workdir / "run.jsonl"),
        "--no-progress",
    )  # fmt: skip
    with LoadGenerator([f"http://{lb}:{LB_PORT}/"], concurrency=8) as load:
        time.sleep(1.0)
        result = rollout(*argv)
        time.sleep(1.0)
    return {
        "result": result,
        "load": load.report(),
        "before": before,
        "events": read_events(workdir / "run.jsonl"),
        "lb": lb,
    }


def test_the_rollout_reboots_with_systemctl_and_loses_no_request(
    host: Lab, rolled: dict[str, Any]
) -> None:
    result = rolled["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert rolled["load"].ok > 0 and rolled["load"].failed == 0, rolled["load"]
    finished = {e["step"]: e for e in rolled["events"] if e["kind"] == "step-finished"}
    assert list(finished) == STEPS
    assert finished["reboot"]["state"] == "done"
    assert finished["reboot"]["detail"].startswith("rebooted, back after")
    assert "lab-api invocation " in finished["came-back"]["detail"]
    assert all_in_rotation(backend_servers(rolled["lb"]))


def test_a_container_reboot_is_a_new_pid_1_not_a_new_kernel(
    host: Lab, rolled: dict[str, Any]
) -> None:
    before, after = rolled["before"]["identity"], identity(host)
    assert after["boot_id"] == before["boot_id"]  # the kernel did not reboot
    assert after["btime"] == before["btime"]
    assert after["init_start"] != before["init_start"]  # systemd did
    assert sh_ok(host, HOST, "cat /proc/1/comm").strip() == "systemd"
    assert sh_ok(host, HOST, "systemctl is-system-running --wait").strip() == "running"
    # The lab's state follows the host through its relaunch.
    init = host.state().host(HOST).pid
    assert init is not None and init != rolled["before"]["init"] and processes.alive(init)
    assert (
        host.exec(HOST, ["cut", "-d ", "-f22", "/proc/1/stat"]).stdout.decode().strip()
        == (after["init_start"])
    )


def test_what_ran_came_back_and_the_ledger_keeps_only_what_did_not(
    host: Lab, rolled: dict[str, Any]
) -> None:
    for unit, invocation in rolled["before"]["invocations"].items():
        assert unit_property(host, HOST, unit, "ActiveState") == "active", unit
        assert unit_property(host, HOST, unit, "InvocationID") not in ("", invocation), unit
    # /run is new: the reboot request went with the old boot.
    assert sh(host, HOST, "test -e /run/reboot-required").returncode == 1
    # memcached is disabled: the reboot did not start it, so its deferred restart is still owed.
    assert unit_property(host, HOST, "memcached.service", "ActiveState") == "inactive"
    assert owed(host) == ["memcached.service"]
    status = sh(host, HOST, "interlock status")
    assert (status.returncode, status.stdout.strip()) == (
        1,
        "Services queued for restart: memcached",
    )
    # Before the reboot all of these were owed; the rollout's `interlock check` cleared those
    # the reboot paid (a new invocation since) and settled the dormant socket and target.
    assert rolled["before"]["owed"] == [
        "cron",
        "lab-api.service",
        "memcached.service",
        "rescue-ssh.target",
        "ssh",
        "ssh.socket",
    ]
