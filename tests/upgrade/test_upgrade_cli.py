"""`interlock upgrade plan` from an inventory file and saved facts, as an operator runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from interlock.rollout.plan import decode
from interlock.upgrade.facts import facts_to_json
from interlock.upgrade.recipe import builtin_recipe_path, load_recipe
from upgrade.upgrade_cli import main
from upgrade.upgrade_cloud import cloud, facts_for


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    inventory = cloud()
    document = {
        "hosts": {
            name: {"address": host.address, "groups": list(host.groups)}
            for name, host in inventory.hosts.items()
        }
    }
    inventory_path = tmp_path / "inventory.yaml"
    inventory_path.write_text(yaml.safe_dump(document))
    facts = facts_for(load_recipe(builtin_recipe_path("openstack")), inventory)
    facts_path = tmp_path / "facts.json"
    facts_path.write_text(json.dumps(facts_to_json(facts)))
    return inventory_path, facts_path


def test_plan_prints_the_tree_with_commands_and_an_estimate(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inventory, facts = files
    code = main(["upgrade", "plan", "openstack", "-i", str(inventory), "--facts", str(facts)])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Upgrade: OpenStack 2024.1 (Caracal) on Debian 12"
    assert any(line.startswith("  estimated duration: ") for line in lines)
    sections = [line for line in lines if line.startswith("== ")]
    assert [s.split()[1] for s in sections][:2] == ["prepare", "keystone"]
    assert sections[-1].startswith("== finalize ==")
    assert re.search(
        r"^Batch 3/\d+ \[keystone/first\] · keystone: first controller ctl2 ", out, re.M
    )
    assert "$ keystone-manage db_sync --expand" in out


def test_plan_json_is_the_stored_plan(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inventory, facts = files
    argv = ["upgrade", "plan", "openstack", "-i", str(inventory), "--facts", str(facts)]
    assert main([*argv, "--json", "--limit", "controllers"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["first_controller"] == "ctl2"
    assert document["estimate_seconds"] == pytest.approx(sum(document["batch_estimates"].values()))
    plan = decode(document["plan"])
    assert {hp.host.name for hp in plan.hosts} == {"ctl1", "ctl2", "ctl3"}


def test_errors_name_the_file(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory, facts = files
    bad = tmp_path / "bad.yaml"
    shipped = builtin_recipe_path("openstack").read_text()
    bad.write_text(shipped.replace("sources.list.d/openstack.list", "sources.list", 1))
    line = shipped[: shipped.index("sources.list.d/openstack.list")].count("\n") + 1
    assert main(["upgrade", "plan", str(bad), "-i", str(inventory), "--facts", str(facts)]) == 1
    assert f"{bad} line {line}: repository.file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upgrade", "plan", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Only packages that are installed and have a newer candidate are installed" in help_text
