"""--limit patterns: Ansible's syntax, and unknown names are errors rather than empty selections."""

from __future__ import annotations

import re

import pytest

from interlock.fleet.host_pattern import HostPatternError, select_hosts, split_pattern
from interlock.fleet.inventory import Host, Inventory

HOSTS = ["ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3", "cmp10", "lb1", "web"]
GROUPS = {
    "controllers": ("ctl1", "ctl2", "ctl3"),
    "computes": ("cmp1", "cmp2", "cmp3", "cmp10"),
    "az1": ("ctl1", "cmp1", "cmp10", "lb1"),
    "az2": ("ctl2", "cmp2"),
    "web": ("lb1",),
    "empty": (),
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", HOSTS),
        ("*", HOSTS),
        ("ctl2", ["ctl2"]),
        ("controllers", ["ctl1", "ctl2", "ctl3"]),
        ("cmp*", ["cmp1", "cmp2", "cmp3", "cmp10"]),
        ("cmp?", ["cmp1", "cmp2", "cmp3"]),
        ("cmp[12]*", ["cmp1", "cmp2", "cmp10"]),
        ("controllers:computes", ["ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3", "cmp10"]),
        ("computes,controllers", ["ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3", "cmp10"]),
        ("computes:&az1", ["cmp1", "cmp10"]),
        ("computes:!az1", ["cmp2", "cmp3"]),
        ("!computes", ["ctl1", "ctl2", "ctl3", "lb1", "web"]),
        ("&az2", ["ctl2", "cmp2"]),
        # Order in the pattern does not matter: unions, then intersections, then exclusions.
        ("!cmp1:computes:&az1", ["cmp10"]),
        ("all:!controllers:!computes", ["lb1", "web"]),
        ("~cmp\\d$", ["cmp1", "cmp2", "cmp3"]),
        ("~c(tl|mp)1", ["ctl1", "cmp1", "cmp10"]),
        ("computes[0]", ["cmp1"]),
        ("computes[-1]", ["cmp10"]),
        ("computes[1:2]", ["cmp2", "cmp3"]),
        ("computes[2:]", ["cmp3", "cmp10"]),
        ("computes[:1]", ["cmp1", "cmp2"]),
        ("computes[0:1]:controllers[2]", ["ctl3", "cmp1", "cmp2"]),
        # A name that is both a host and a group selects both.
        ("web", ["lb1", "web"]),
        # A known group that is empty selects nothing, without error.
        ("empty", []),
        (" ctl1 : ctl2 ", ["ctl1", "ctl2"]),
        ("ctl1::ctl2", ["ctl1", "ctl2"]),
        ("controllers:&computes", []),
    ],
)
def test_patterns(pattern: str, expected: list[str]) -> None:
    assert select_hosts(pattern, HOSTS, GROUPS) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("ctl9", "'ctl9' matches no host or group"),
        ("controlers", "'controlers' matches no host or group"),
        ("computes:!cmpp*", "'cmpp*' matches no host or group"),
        ("computes:&nosuch", "'nosuch' matches no host or group"),
        ("db*", "'db*' matches no host or group"),
        ("~db", "'~db' matches no host or group"),
        ("~(", "invalid regular expression"),
        ("computes[4]", "index 4 is out of range (4 hosts)"),
        ("computes[3:1]", "range is out of bounds"),
        ("!", "must be followed by a host or group"),
        ("", "empty host pattern"),
        (" : ", "empty host pattern"),
        (" , ", "empty host pattern"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(HostPatternError, match=re.escape(message)):
        select_hosts(pattern, HOSTS, GROUPS)


def test_split_keeps_colons_inside_subscripts() -> None:
    assert split_pattern("computes[1:2]:!cmp3") == ["computes[1:2]", "!cmp3"]


def test_inventory_select_returns_hosts() -> None:
    hosts = {name: Host(name=name, address="192.0.2.1") for name in HOSTS}
    inventory = Inventory(path=None, hosts=hosts, groups=GROUPS)
    assert inventory.select() == list(hosts.values())
    assert inventory.select("az2") == [hosts["ctl2"], hosts["cmp2"]]
    with pytest.raises(HostPatternError):
        inventory.select("nosuch")
