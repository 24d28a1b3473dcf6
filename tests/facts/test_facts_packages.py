"""The packages fact: installed and candidate versions, parsed from output of real hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.facts import packages
from interlock.facts.packages import PackageFact, parse_dpkg_query, parse_policy

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_apt_cache_policy_on_this_machine() -> None:
    # `LC_ALL=C apt-cache policy dpkg-dev python3 libc6 cowsay no-such-package-xyz`
    policy = parse_policy(fixture("packages-apt-cache-policy.txt"))
    assert policy["dpkg-dev"] == ("1.21.22", "1.21.23")
    assert policy["python3"] == ("3.11.2-1+b1", "3.11.2-1+b1")
    assert policy["libc6"] == ("2.36-9+deb12u14", "2.36-9+deb12u14")
    assert policy["cowsay"] == (None, "3.03+dfsg2-8")
    assert "no-such-package-xyz" not in policy


def test_dpkg_query_keeps_installed_packages_only() -> None:
    installed = parse_dpkg_query(fixture("packages-dpkg-query.txt"))
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
    # packages.command run on a lab controller with v1 installed and the v2 repository previewed.
    names = ["ilu-lib", "ilu-ident", "ilu-compute-conductor", "ilu-compute-agent", "ilu-puppet"]
    facts = packages.parse(fixture("packages-lab-controller.txt"), names)
    assert facts["ilu-lib"] == PackageFact("ilu-lib", "1.0-1", "2.0-1")
    assert facts["ilu-lib"].upgradable
    assert facts["ilu-compute-agent"] == PackageFact("ilu-compute-agent", None, "2.0-1")
    assert not facts["ilu-compute-agent"].upgradable  # not installed: never installed by us
    assert facts["ilu-puppet"] == PackageFact("ilu-puppet", "1.0-1", "1.0-1")
    assert not facts["ilu-puppet"].upgradable
    with pytest.raises(ValueError, match="incomplete"):
        packages.parse("#installed\n", names)


def test_the_command_passes_values_as_parameters() -> None:
    argv = packages.command("/etc/apt/sources.list.d/x.list", "deb http://m/ ./\n", ["a", "b"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "sh",
        "/etc/apt/sources.list.d/x.list",
        "deb http://m/ ./\n",
        "a",
        "b",
    ]
    assert "http://m" not in argv[2]
