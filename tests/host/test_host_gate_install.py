"""Installing the gate with update-alternatives under a temporary root, and restoring exactly."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from host.gate_env import INTERLOCK, SRC, charm_policy, make_gate_env
from interlock.host.gate import GateConfig
from interlock.host.gate_install import (
    GATE_LINK,
    GATE_SCRIPT,
    PRESERVED,
    GateInstaller,
    GateInstallError,
    package_root,
    render_gate_script,
)

DOCKER_STUB = b"""#!/bin/sh

# For most Docker users, "apt-get install" only happens during "docker build",
# where starting services doesn't work and often fails in humorous ways. This
# prevents those failures by stopping the services from attempting to start.

exit 101
"""


def query(root: Path) -> dict[str, object]:
    """`update-alternatives --query` as {value, status, alternatives: {path: priority}}."""
    result = subprocess.run(
        ["update-alternatives", "--root", str(root), "--query", "policy-rc.d"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return {"alternatives": {}}
    info: dict[str, object] = {"alternatives": {}}
    alternatives: dict[str, int] = {}
    current = None
    for line in result.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key == "Alternative":
            current = value
        elif key == "Priority" and current:
            alternatives[current] = int(value)
        elif key in ("Value", "Status"):
            info[key.lower()] = value
    info["alternatives"] = alternatives
    return info


def snapshot(path: Path) -> tuple[str, int, int, int]:
    st = path.lstat()
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
    )


pytestmark = pytest.mark.root


@pytest.fixture
def docker_root(tmp_path: Path) -> Path:
    """A root whose /usr/sbin/policy-rc.d is Docker's stub, with an unusual owner and mode."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to give the stub another owner)")
    root = tmp_path / "root"
    link = root / GATE_LINK.lstrip("/")
    link.parent.mkdir(parents=True)
    link.write_bytes(DOCKER_STUB)
    os.chown(link, 1234, 5678)
    link.chmod(0o750)
    return root


def test_install_keeps_the_existing_gate_as_a_chained_lower_alternative(docker_root: Path) -> None:
    link = docker_root / GATE_LINK.lstrip("/")
    before = snapshot(link)
    done = GateInstaller(docker_root).install()
    assert any("moved the existing" in line for line in done)

    preserved = docker_root / PRESERVED.lstrip("/")
    assert snapshot(preserved) == before  # bytes, mode and owner
    assert link.is_symlink()
    info = query(docker_root)
    assert info["alternatives"] == {GATE_SCRIPT: 50, PRESERVED: 10}
    assert info["value"] == GATE_SCRIPT

    status = GateInstaller(docker_root).status()
    assert status.ours_active and status.preserved
    assert status.link_target == GATE_SCRIPT
    assert status.chained == PRESERVED
    config = GateConfig.load(str(docker_root / "etc" / "interlock" / "gate.conf"))
    assert (config.chain, config.on_policy_error) == (PRESERVED, "deny")


def test_installed_script_is_the_rendered_gate(docker_root: Path) -> None:
    GateInstaller(docker_root).install()
    script = docker_root / GATE_SCRIPT.lstrip("/")
    text = script.read_text()
    assert text == render_gate_script(package_root(), "/etc/interlock/gate.conf")
    assert text.startswith("#!/usr/bin/python3 -IS\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_install_twice_changes_nothing(docker_root: Path) -> None:
    installer = GateInstaller(docker_root)
    installer.install()
    files = {p: snapshot(p) for p in docker_root.rglob("*") if p.is_file() and "log" not in p.parts}
    info = query(docker_root)
    second = installer.install()
    assert not any("moved" in line for line in second)
    assert query(docker_root) == info
    assert {p: snapshot(p) for p in files} == files


def test_uninstall_restores_the_original_byte_for_byte(docker_root: Path) -> None:
    link = docker_root / GATE_LINK.lstrip("/")
    before = snapshot(link)
    installer = GateInstaller(docker_root)
    installer.install(on_policy_error="uncertain")
    installer.uninstall()
    assert not link.is_symlink()
    assert snapshot(link) == before
    assert query(docker_root)["alternatives"] == {}
    assert not (docker_root / GATE_SCRIPT.lstrip("/")).exists()
    assert not (docker_root / PRESERVED.lstrip("/")).exists()
    assert not (docker_root / "etc" / "interlock").exists()
    assert installer.uninstall() == []  # idempotent


def test_without_a_previous_gate_uninstall_leaves_no_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installer = GateInstaller(root)
    installer.install()
    link = root / GATE_LINK.lstrip("/")
    assert link.is_symlink()
    assert query(root)["alternatives"] == {GATE_SCRIPT: 50}
    assert installer.status().chained is None
    installer.uninstall()
    assert not link.exists() and not link.is_symlink()
    assert query(root)["alternatives"] == {}


def test_no_chain_option(docker_root: Path) -> None:
    GateInstaller(docker_root).install(chain=False)
    assert GateInstaller(docker_root).status().chained is None
    assert query(docker_root)["alternatives"] == {GATE_SCRIPT: 50, PRESERVED: 10}


def test_refuses_to_overwrite_a_kept_gate(docker_root: Path) -> None:
    (docker_root / PRESERVED.lstrip("/")).write_bytes(b"#!/bin/sh\nexit 0\n")
    with pytest.raises(GateInstallError, match="exist; move one away"):
        GateInstaller(docker_root).install()


def test_uninstall_refuses_to_restore_a_changed_original(docker_root: Path) -> None:
    installer = GateInstaller(docker_root)
    installer.install()
    (docker_root / PRESERVED.lstrip("/")).write_bytes(b"#!/bin/sh\nexit 0\n")
    with pytest.raises(GateInstallError, match="changed since install"):
        installer.uninstall()


def test_installed_chain_is_honoured(docker_root: Path, tmp_path: Path) -> None:
    """The gate as installed: config chain → the kept Docker stub, whose 101 stands."""
    GateInstaller(docker_root).install()
    installed = GateConfig.load(str(docker_root / "etc" / "interlock" / "gate.conf"))
    assert installed.chain == PRESERVED
    gate = make_gate_env(tmp_path / "gate", chain=str(docker_root / PRESERVED.lstrip("/")))
    gate.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart"]}))
    stub = gate.run("memcached", "start")
    assert (stub.returncode, stub.stdout) == (101, "")  # the stub refuses everything
    assert gate.events() == []  # its refusals are not deferrals of ours
    ours = gate.run("cron", "restart")
    assert ours.returncode == 101
    assert len(gate.events()) == 1


def test_cli_install_status_uninstall(docker_root: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(INTERLOCK), "--root", str(docker_root), "gate", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    before = snapshot(docker_root / GATE_LINK.lstrip("/"))
    assert cli("status").returncode == 1
    installed = cli("install", "--on-policy-error", "allow")
    assert installed.returncode == 0, installed.stderr
    status = cli("status", "--json")
    assert status.returncode == 0
    assert '"active": true' in status.stdout
    assert str(SRC) in (docker_root / GATE_SCRIPT.lstrip("/")).read_text()
    assert cli("uninstall").returncode == 0
    assert snapshot(docker_root / GATE_LINK.lstrip("/")) == before
    again = cli("uninstall")
    assert (again.returncode, again.stdout) == (0, "the gate was not installed; nothing to do\n")
