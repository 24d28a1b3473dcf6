"""`interlock upgrade plan` from an inventory file and saved facts, as an operator runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from interlock.rollout.journal import Journal
from interlock.rollout.plan import decode
from interlock.upgrade.facts import facts_to_json
from interlock.upgrade.recipe import builtin_recipe_path, load_recipe
from upgrade.upgrade_cli import main
from upgrade.upgrade_cloud import SEED, cloud, facts_for

SEED_CLOUD = Path(__file__).parent / "fixtures" / "seed-cloud"


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
    assert any(line.startswith("  estimated makespan: ") for line in lines)
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


def test_the_seed_cloud_example_is_the_seed_shape_with_its_facts() -> None:
    inventory = yaml.safe_load((SEED_CLOUD / "inventory.yaml").read_text())
    expected = cloud(SEED)
    assert {name: host["address"] for name, host in inventory["hosts"].items()} == {
        name: host.address for name, host in expected.hosts.items()
    }
    facts = json.loads((SEED_CLOUD / "facts.json").read_text())
    assert facts == facts_to_json(
        facts_for(load_recipe(builtin_recipe_path("openstack")), expected)
    )


def test_plan_counts_interruptions_per_host_in_natural_order_and_the_makespan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["upgrade", "plan", "openstack", "-i", str(SEED_CLOUD / "inventory.yaml")]
    argv += ["--facts", str(SEED_CLOUD / "facts.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = out[out.index("  service interruptions per host") : out.index("\nNamed below")]
    rows = [line.split("  ")[2:] for line in summary.splitlines()[1:-1]]
    assert [row[0].strip() for row in rows] == [
        "cmp1 … cmp83 (83 hosts)",
        "ctl1",
        "ctl2",
        "ctl3",
        "net1 … net12 (12 hosts)",
    ]
    assert rows[0][-1].strip().startswith("1 time, ")
    assert rows[1][-1].strip().startswith("13 times, ")
    makespan = re.search(r"^  estimated makespan: (\d+) h (\d+) min ", out, re.M)
    assert makespan is not None and int(makespan[1]) * 60 + int(makespan[2]) <= 180
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    interruptions = {entry.pop("host"): entry for entry in document["interruptions"]}
    names = list(interruptions)
    assert names[:11] == [f"cmp{n}" for n in range(1, 12)]  # cmp2 before cmp10
    assert len(names) == 98
    assert interruptions["cmp10"]["count"] == interruptions["net12"]["count"] == 1
    assert interruptions["ctl1"]["count"] == 13
    net = interruptions["net3"]
    assert net["total_seconds"] == sum(net["seconds"]) > 3 * 30  # three waits between agents
    assert document["makespan_seconds"] == document["estimate_seconds"] <= 3 * 3600
    assert document["visits"] == {
        "network": ["neutron"],
        "compute": ["telemetry", "nova", "neutron"],
    }


def test_run_refuses_a_coordination_that_does_not_answer_before_any_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run would keep the --coordination it is given (for resume and abort); one that does
    not answer stops it before the journal holds a run or a host is reached."""
    inventory = cloud()
    hosts = {name: {"address": "127.0.0.1", "port": 1, "groups": list(host.groups)}
             for name, host in inventory.hosts.items()}  # fmt: skip
    inventory_path = tmp_path / "inventory.yaml"
    inventory_path.write_text(yaml.safe_dump({"hosts": hosts}))
    facts = facts_for(load_recipe(builtin_recipe_path("openstack")), inventory)
    facts_path = tmp_path / "facts.json"
    facts_path.write_text(json.dumps(facts_to_json(facts)))
    journal = tmp_path / "journal.sqlite"
    argv = ["upgrade", "run", "openstack", "-i", str(inventory_path), "--facts", str(facts_path),
            "--journal", str(journal), "--yes", "--json"]  # fmt: skip
    argv += ["--coordination", "etcd://127.0.0.1:1"]

    assert main(argv) == 1
    assert "no etcd member answered" in capsys.readouterr().err
    with Journal(journal) as opened:
        assert opened.runs() == []
