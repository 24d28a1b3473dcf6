"""The zipapp `fleet install` copies to hosts: host commands only, and all of them import there."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from interlock.cli.host_entry import HOST_GROUPS
from interlock.fleet.install import build_zipapp
from interlock.host.gate_install import SYSTEM_PYTHON

OPERATOR_ONLY = ("fleet", "rollout", "upgrade", "lb", "lab", "demo")


def test_the_zipapp_carries_the_host_side_and_every_module_of_it_imports(tmp_path: Path) -> None:
    archive = tmp_path / "interlock"
    digest = build_zipapp(archive)
    assert build_zipapp(tmp_path / "again") == digest  # reproducible: hosts are not rewritten
    names = zipfile.ZipFile(archive).namelist()
    modules = [
        name[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for name in names
        if name.startswith("interlock/") and name.endswith(".py")
    ]
    assert "interlock.host.gate" in modules and "interlock.detect.watch" in modules
    for part in OPERATOR_ONLY:
        assert not any(m.startswith(f"interlock.{part}.") for m in modules), part
    assert not any(name.startswith(("pygments/", "markdown_it/")) for name in names)
    # Under the hosts' python, isolated from this machine's site-packages and this checkout.
    load = "import importlib, sys\nsys.path.insert(0, sys.argv[1])\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in modules
    )
    imported = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", load, str(archive)], capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr


def test_the_zipapp_offers_the_host_commands_only(tmp_path: Path) -> None:
    archive = tmp_path / "interlock"
    build_zipapp(archive)
    usage = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(archive), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("status", "show", "check", "restart", "clear", "hook", "gate", "detect"):
        assert f"\n    {command} " in usage, command
    for group in OPERATOR_ONLY:
        assert f"\n    {group} " not in usage, group
    assert HOST_GROUPS == ("host", "gate", "detect")
    status = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(archive), "--root", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (status.returncode, status.stdout) == (0, "No restarts or hooks deferred\n")
