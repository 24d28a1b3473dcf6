"""`interlock status`, `show --json` and `--metrics` say when a host needs a reboot, after the
charms' wording for restarts and hooks, which stays as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.cli.main import main as cli_main
from interlock.host.hooks import HookStore
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.paths import HostPaths


def call(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli_main(["--root", str(root), *args])
    return code, capsys.readouterr().out


def require_reboot(root: Path, packages: str) -> None:
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "run" / "reboot-required").write_text("*** System restart required ***\n")
    (root / "run" / "reboot-required.pkgs").write_text(packages)


def test_status_line_appends_the_reboot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = HostPaths.under(tmp_path)
    assert call(tmp_path, capsys, "status") == (0, "No restarts or hooks deferred\n")

    require_reboot(tmp_path, "dbus\n")
    assert call(tmp_path, capsys, "status") == (1, "Reboot required: dbus\n")

    Ledger(str(paths.ledger_dir)).record(
        DeferredEvent("cron", "restart", "Package update", 1700000000, "ops", "charm")
    )
    HookStore(paths.state_dir).record("config-changed", ["true"])
    code, out = call(tmp_path, capsys, "status")
    assert (code, out) == (
        1,
        "Services queued for restart: cron. Hooks skipped due to disabled auto restarts: "
        "config-changed. Reboot required: dbus\n",
    )

    code, out = call(tmp_path, capsys, "status", "--json")
    data = json.loads(out)
    assert data["reboot"]["needed"] is True
    assert data["reboot"]["packages"] == ["dbus"]
    assert data["reboot"]["reboot_required_file"] is True
    assert data["services"] == ["cron"]


def test_show_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_reboot(tmp_path, "linux-image-6.1.0-57-cloud-amd64\ndbus\n")
    code, out = call(tmp_path, capsys, "show", "--json")
    assert code == 0
    assert json.loads(out)["reboot"]["packages"] == ["linux-image-6.1.0-57-cloud-amd64", "dbus"]

    code, out = call(tmp_path, capsys, "show")
    assert out.splitlines()[-1] == "Reboot required: linux-image-6.1.0-57-cloud-amd64, dbus"

    # The charms' YAML stays exactly theirs.
    code, out = call(tmp_path, capsys, "show", "--format", "charm")
    assert out == "hooks: []\nrestarts: []\n"

    target = tmp_path / "interlock.prom"
    call(tmp_path, capsys, "status", "--metrics", str(target))
    lines = target.read_text().splitlines()
    assert "interlock_reboot_required 1" in lines
    assert "interlock_reboot_newer_kernels 0" in lines
