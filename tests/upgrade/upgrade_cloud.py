"""A realistic cloud for the compiler and CLI tests: 3 controllers (ctl2 holds the VIP), 6
computes, 2 network nodes, 2 storage nodes, and their facts as a Caracal upgrade sees them; and
the seed's cloud (3 controllers, 83 computes, 12 network nodes)."""

from __future__ import annotations

from interlock.facts.packages import PackageFact
from interlock.fleet.inventory import Host, Inventory
from interlock.upgrade.facts import HostFacts, packages_for, role_hosts, roles_by_host
from interlock.upgrade.facts import services_for as services_of
from interlock.upgrade.recipe import Recipe

OLD = "2:28.0.0-1~bpo12+1"
NEW = "2:29.0.0-1~bpo12+1"
GROUPS = {"controllers": 3, "computes": 6, "network": 2, "storage": 2}
SEED = {"controllers": 3, "computes": 83, "network": 12, "storage": 0}
STEMS = {"controllers": "ctl", "computes": "cmp", "network": "net", "storage": "stor"}


def cloud(shape: dict[str, int] | None = None) -> Inventory:
    hosts: dict[str, Host] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for number, (group, count) in enumerate((shape or GROUPS).items()):
        names = [f"{STEMS[group]}{index}" for index in range(1, count + 1)]
        for index, name in enumerate(names, start=1):
            hosts[name] = Host(name, f"10.0.{number}.{10 + index}", groups=(group,))
        groups[group] = tuple(names)
    return Inventory(None, hosts, groups)


def facts_for(
    recipe: Recipe, inventory: Inventory, changes: dict[str, dict[str, PackageFact]] | None = None
) -> dict[str, HostFacts]:
    """Every recipe package of a host's roles installed at OLD with NEW as candidate, except:
    on each host a shared library already current and one not installed; then `changes`."""
    facts = {}
    for name, (_, roles) in roles_by_host(role_hosts(recipe, inventory)).items():
        packages = {p: PackageFact(p, OLD, NEW) for p in packages_for(recipe, roles)}
        packages["python3-oslo.config"] = PackageFact("python3-oslo.config", NEW, NEW)
        packages["python3-oslo.log"] = PackageFact("python3-oslo.log", None, NEW)
        packages.update((changes or {}).get(name, {}))
        facts[name] = HostFacts(
            name, packages, frozenset(services_of(recipe, roles)), vip=name == "ctl2"
        )
    return facts
