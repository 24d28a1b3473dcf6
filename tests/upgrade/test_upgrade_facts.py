"""Host facts: pure parsers on output captured from real hosts, and the saved-facts file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.errors import FileFormatError
from interlock.upgrade.facts import (
    HostFacts,
    PackageFact,
    facts_from_json,
    facts_to_json,
    load_facts,
    packages_command,
    parse_dpkg_query,
    parse_packages,
    parse_policy,
    parse_services,
    services_command,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_apt_cache_policy_on_this_machine() -> None:
    # `LC_ALL=C apt-cache policy dpkg-dev python3 libc6 cowsay no-such-package-xyz`
    policy = parse_policy(fixture("apt-cache-policy.txt"))
    assert policy["dpkg-dev"] == ("1.21.22", "1.21.23")
    assert policy["python3"] == ("3.11.2-1+b1", "3.11.2-1+b1")
    assert policy["libc6"] == ("2.36-9+deb12u14", "2.36-9+deb12u14")
    assert policy["cowsay"] == (None, "3.03+dfsg2-8")
    assert "no-such-package-xyz" not in policy


def test_dpkg_query_keeps_installed_packages_only() -> None:
    installed = parse_dpkg_query(fixture("dpkg-query.txt"))
    assert installed == {
        "dpkg-dev": "1.21.22",
        "libc6": "2.36-9+deb12u14",
        "python3": "3.11.2-1+b1",
    }
    # Config files left (rc), not installed (un), unpacked only (iU), and a multi-arch pair
    # (the newer counts).
    text = "a\t1.0\trc \nb\t\tun \nc:amd64\t2.0\tii \nc:i386\t1.0\tii \nd\t1.0\tiU \n"
    assert parse_dpkg_query(text) == {"c": "2.0"}


def test_the_package_probe_output_of_a_lab_host() -> None:
    # packages_command run on a lab controller with v1 installed and the v2 repository previewed.
    names = ["ilu-lib", "ilu-ident", "ilu-compute-conductor", "ilu-compute-agent", "ilu-puppet"]
    facts = parse_packages(fixture("package-probe.txt"), names)
    assert facts["ilu-lib"] == PackageFact("ilu-lib", "1.0-1", "2.0-1")
    assert facts["ilu-lib"].upgradable
    assert facts["ilu-compute-agent"] == PackageFact("ilu-compute-agent", None, "2.0-1")
    assert not facts["ilu-compute-agent"].upgradable  # not installed: never installed by us
    assert facts["ilu-puppet"] == PackageFact("ilu-puppet", "1.0-1", "1.0-1")
    assert not facts["ilu-puppet"].upgradable
    with pytest.raises(ValueError, match="incomplete"):
        parse_packages("#installed\n", names)


def test_the_services_probe_output_of_a_lab_host() -> None:
    # puppet held by an earlier upgrade, the ident API present, nova-api absent.
    present, held = parse_services(fixture("services-probe.txt"))
    assert present == {"puppet", "ilu-ident-api"}
    assert held == {"puppet"}


def test_probe_commands_pass_values_as_parameters() -> None:
    argv = packages_command("/etc/apt/sources.list.d/x.list", "deb http://m/ ./\n", ["a", "b"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "sh",
        "/etc/apt/sources.list.d/x.list",
        "deb http://m/ ./\n",
        "a",
        "b",
    ]
    assert "http://m" not in argv[2]
    assert services_command(["nova-api"])[-1] == "nova-api"


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
