"""Inventory variables stay in the inventory: never in plans, journals, logs, events or output.

Ansible inventories carry passwords (`ansible_become_password`) and values of any YAML type
(dates); a rollout needs none of them. Both inventory formats, both outputs, the whole run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.cli.main import main
from interlock.fleet.inventory_file import load_inventory

SECRET = "S3cret-become-PW"


def ini_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(
        "[web]\n"
        f"web1 ansible_host=127.0.0.1 ansible_become_password={SECRET} built=2024-01-02\n"
        "[web:vars]\n"
        f"vault_db_password={SECRET}\n"
    )
    return path


def yaml_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        "    deployed_on: 2024-01-02\n"
        "  hosts:\n"
        "    web1:\n"
        "      ansible_host: 127.0.0.1\n"
        f"      ansible_become_password: {SECRET}\n"
        "      installed: 2023-12-31 10:00:00\n"
    )
    return path


@pytest.fixture(params=["ini", "yaml"])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return ini_inventory(tmp_path) if request.param == "ini" else yaml_inventory(tmp_path)


def test_variables_are_read_but_not_carried_by_hosts(inventory: Path) -> None:
    loaded = load_inventory(inventory)
    assert loaded.host_vars["web1"]["ansible_become_password"] == SECRET
    host = loaded.hosts["web1"]
    assert SECRET not in repr(host) and SECRET not in repr(loaded)
    assert not hasattr(host, "vars")


def test_plan_output_holds_no_variable(inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["rollout", "plan", "-i", str(inventory), "--transport", "local", "--command", "true"]
    assert main([*base, "--json"]) == 0
    assert main(base) == 0
    out, err = capsys.readouterr()
    assert "web1" in out and SECRET not in out + err
    assert "2024" not in out


def test_run_keeps_variables_out_of_journal_log_and_events(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    journal, log, events = state / "j.sqlite", state / "run.log", state / "events.jsonl"
    argv = [
        "rollout", "run", "-i", str(inventory), "--transport", "local", "--command", "true",
        "--journal", str(journal), "--log", str(log), "--events", str(events),
        "--yes", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert journal.exists() and log.exists() and events.exists()
    for path in state.iterdir():  # the journal with its -wal/-shm files and locks
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out + err
    assert main(["rollout", "status", "--journal", str(journal), "--json"]) == 0
    assert SECRET not in capsys.readouterr().out


def test_a_plan_stored_with_variables_is_refused_not_loaded(tmp_path: Path) -> None:
    from interlock.rollout.plan import Plan

    stored = (
        '{"@": "Plan", "title": "t", "batches": [{"@": "Batch", "id": "b1", "stage": "batch",'
        ' "concurrency": 1, "hosts": [{"@": "HostPlan", "steps": [], "host": {"@": "Host",'
        ' "name": "web1", "address": "127.0.0.1", "vars": {"@map": {"pw": "x"}}}}]}]}'
    )
    with pytest.raises(ValueError, match="stored Host does not match this version"):
        Plan.from_json(stored)
