"""Host facts: pure parsers on output captured from real hosts, and the saved-facts file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.errors import FileFormatError
from interlock.facts.packages import PackageFact
from interlock.upgrade.facts import (
    HostFacts,
    facts_from_json,
    facts_to_json,
    load_facts,
    parse_services,
    services_command,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_services_probe_output_of_a_lab_host() -> None:
    # puppet held by an earlier upgrade, the ident API present, nova-api absent.
    present, held = parse_services(fixture("services-probe.txt"))
    assert present == {"puppet", "ilu-ident-api"}
    assert held == {"puppet"}


def test_upgrades_are_installed_packages_with_a_newer_candidate() -> None:
    facts = HostFacts(
        "cmp1",
        {
            "a": PackageFact("a", "1.0-1", "2.0-1"),
            "b": PackageFact("b", "2.0-1", "2.0-1"),
            "c": PackageFact("c", None, "2.0-1"),
            "d": PackageFact("d", "2:1.0", "1.5"),  # the epoch: 1.5 is older
        },
    )
    assert facts.upgrades(["a", "b", "c", "d", "e"]) == [("a", "2.0-1")]


def test_saved_facts_round_trip_and_errors(tmp_path: Path) -> None:
    facts = {
        "ctl1": HostFacts(
            "ctl1",
            {"nova-api": PackageFact("nova-api", "1", "2")},
            frozenset({"nova-api", "puppet"}),
            vip=True,
            held=frozenset({"puppet"}),
        )
    }
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts_to_json(facts)))
    assert load_facts(path) == facts
    path.write_text('{"hosts": {\n"ctl1": [}}')
    with pytest.raises(FileFormatError, match=r"facts.json line 2: not valid JSON"):
        load_facts(path)
    with pytest.raises(FileFormatError, match="services must be a list"):
        facts_from_json({"hosts": {"ctl1": {"services": "nova-api"}}}, "f.json")


def test_the_services_command_passes_names_as_parameters() -> None:
    argv = services_command(["nova-api"])
    assert argv[-1] == "nova-api" and "nova-api" not in argv[2]
