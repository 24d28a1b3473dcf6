"""One lab of systemd hosts for the whole session: lb1, ctl1-ctl2 and cmp1-cmp3, every one booting
systemd as PID 1 from its own Debian root file system, with interlock installed by
`interlock fleet install` over SSH. Tests that change a host's state say which host they own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.lab_fleet import interlock, package_snapshot
from interlock.lab import processes
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab

HOSTS = ["lb1", "ctl1", "ctl2", "cmp1", "cmp2", "cmp3"]


@pytest.fixture(scope="session")
def sdlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, bridge, mounts)")
    directory = tmp_path_factory.mktemp("systemd-lab")
    with running_lab(directory, hosts=6, controllers=2, lbs=1, systemd=6) as lab:
        before = processes.snapshot(lab.processes())
        yield lab
        before |= processes.snapshot(lab.processes())
    leftovers = lab.leftovers(before)
    assert not leftovers, f"lab down left: {leftovers}"


@pytest.fixture(scope="session")
def installed(sdlab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """interlock and its gate on every host, the way an operator installs them."""
    package = package_snapshot(tmp_path_factory.mktemp("package"))
    result = interlock("fleet", "install", "-i", str(sdlab.inventory_path), package=package)
    assert result.returncode == 0, result.stdout + result.stderr
    return package


def sh(lab: Lab, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`command` on `host` through the real OpenSSH client."""
    return subprocess.run(
        lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=timeout, check=False
    )


def sh_ok(lab: Lab, host: str, command: str, timeout: float = 120) -> str:
    result = sh(lab, host, command, timeout)
    assert result.returncode == 0, f"{host}: {command}: exit {result.returncode}: {result.stderr}"
    return result.stdout


def unit_property(lab: Lab, host: str, unit: str, name: str) -> str:
    return sh_ok(lab, host, f"systemctl show --value -p {name} {unit}").strip()
