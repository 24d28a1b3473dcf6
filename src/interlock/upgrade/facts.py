"""What each host has: installed and candidate versions of the recipe's packages, its services,
whether it holds the API VIP. Each probe is a command plus a pure parser.

Packages are the `facts.packages` fact, read against the release's repository before it is
switched on the host, so `upgrade plan` shows the versions `upgrade run` will install.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.errors import FileFormatError, InterlockError, UsageError
from interlock.facts import packages as packages_fact
from interlock.facts.packages import PackageFact
from interlock.fleet.host_pattern import HostPatternError
from interlock.fleet.inventory import Host, Inventory
from interlock.fleet.transport.base import Transport
from interlock.fleet.transport.fan_out import fan_out
from interlock.upgrade.recipe import Recipe
from interlock.upgrade.steps import HELD_DIR

PROBE_TIMEOUT = 600.0

SERVICES_SCRIPT = f"""\
for name do
    present=no
    if [ -d /run/systemd/system ]; then
        case $(systemctl show -p LoadState --value "$name.service" 2>/dev/null) in
            loaded|masked) present=yes ;;
        esac
    elif [ -x "/etc/init.d/$name" ]; then
        present=yes
    fi
    if [ -e "{HELD_DIR}/$name" ]; then echo "$name $present held"; else echo "$name $present"; fi
done
"""

RoleHosts = dict[str, list[Host]]


class FactsError(InterlockError):
    """The facts of some hosts could not be read; the message names them and says why."""


@dataclass(frozen=True)
class HostFacts:
    host: str
    packages: Mapping[str, PackageFact] = field(default_factory=dict, hash=False)
    services: frozenset[str] = frozenset()
    vip: bool = False
    held: frozenset[str] = frozenset()  # services an earlier upgrade holds (stopped, masked)

    def package(self, name: str) -> PackageFact:
        return self.packages.get(name, PackageFact(name))

    def upgrades(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """(package, candidate) for each of `names` installed here with a newer candidate."""
        result = []
        for name in names:
            fact = self.package(name)
            if fact.upgradable and fact.candidate is not None:
                result.append((name, fact.candidate))
        return result


# --- probes: commands and pure parsers ---------------------------------------------------------


def services_command(services: Sequence[str]) -> list[str]:
    return ["sh", "-c", SERVICES_SCRIPT, "sh", *services]


def parse_services(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The services present, and those held by an earlier upgrade (`NAME yes|no [held]`)."""
    present, held = set(), set()
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[1] not in ("yes", "no"):
            continue
        if words[1] == "yes":
            present.add(words[0])
        if words[2:] == ["held"]:
            held.add(words[0])
    return frozenset(present), frozenset(held)


# --- gathering ------------------------------------------------------------------------------


def role_hosts(recipe: Recipe, inventory: Inventory, limit: str | None = None) -> RoleHosts:
    """Each role's hosts, in inventory order; a role whose pattern names nothing has none."""
    allowed = {host.name for host in inventory.select(limit)}
    result: dict[str, list[Host]] = {}
    for role in recipe.roles:
        try:
            hosts = inventory.select(role.hosts)
        except HostPatternError as exc:
            if "matches no host" not in str(exc):
                raise UsageError(f"role {role.name}: {exc}") from None
            hosts = []
        result[role.name] = [host for host in hosts if host.name in allowed]
    return result


def roles_by_host(roles: RoleHosts) -> dict[str, tuple[Host, list[str]]]:
    by_host: dict[str, tuple[Host, list[str]]] = {}
    for role, hosts in roles.items():
        for host in hosts:
            by_host.setdefault(host.name, (host, []))[1].append(role)
    return by_host


def packages_for(recipe: Recipe, roles: Sequence[str]) -> list[str]:
    """The recipe packages a host with these roles may have to upgrade."""
    names: list[str] = []
    for role in roles:
        names.extend(recipe.dependencies_of(role))
        for project in recipe.projects:
            work = project.role(role)
            if work is not None:
                names.extend(work.packages)
    return list(dict.fromkeys(names))


def services_for(recipe: Recipe, roles: Sequence[str]) -> list[str]:
    names = list(recipe.config_management)
    for role in roles:
        for project in recipe.projects:
            work = project.role(role)
            if work is not None:
                names.extend(work.services)
    return list(dict.fromkeys(names))


async def host_facts(
    transport: Transport, host: Host, recipe: Recipe, roles: Sequence[str]
) -> HostFacts:
    names = packages_for(recipe, roles)
    repo = recipe.repository
    probe = await transport.run(
        host, packages_fact.command(repo.file, repo.content, names), timeout=PROBE_TIMEOUT
    )
    if not probe.ok:
        error = probe.stderr.decode("utf-8", "replace").strip()[-400:]
        raise FactsError(f"package probe exited {probe.exit_status}: {error}")
    try:
        facts = packages_fact.parse(probe.stdout.decode("utf-8", "replace"), names)
    except ValueError as exc:
        raise FactsError(str(exc)) from None
    services = services_for(recipe, roles)
    present: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()
    if services:
        result = (await transport.run(host, services_command(services), timeout=60.0)).check()
        present, held = parse_services(result.stdout.decode("utf-8", "replace"))
    vip = False
    if recipe.controller_role in roles:
        rule = recipe.vip_holder
        if rule.command is not None:
            vip = (await transport.run(host, rule.command, timeout=60.0)).ok
        elif rule.label is not None:
            vip = host.labels.get(rule.label, "").lower() in ("true", "yes", "1")
    return HostFacts(host.name, facts, present, vip, held)


async def gather_facts(
    transport: Transport, recipe: Recipe, roles: RoleHosts, window: int = 24
) -> dict[str, HostFacts]:
    """Every host's facts, `window` hosts at a time; FactsError names every host that failed."""
    by_host = roles_by_host(roles)

    async def probe(host: Host) -> HostFacts:
        return await host_facts(transport, host, recipe, by_host[host.name][1])

    outcomes = await fan_out([host for host, _ in by_host.values()], probe, window=window)
    problems = [f"{o.host.name}: {o.reason}" for o in outcomes if not o.ok]
    if problems:
        raise FactsError("cannot read the facts of: " + "; ".join(problems))
    return {o.host.name: o.value for o in outcomes if o.value is not None}


def facts_to_json(facts: Mapping[str, HostFacts]) -> dict[str, Any]:
    return {
        "hosts": {
            name: {
                "packages": {
                    pkg.name: {"installed": pkg.installed, "candidate": pkg.candidate}
                    for pkg in fact.packages.values()
                },
                "services": sorted(fact.services),
                "vip": fact.vip,
                "held": sorted(fact.held),
            }
            for name, fact in facts.items()
        }
    }


def facts_from_json(data: object, path: str) -> dict[str, HostFacts]:
    def fail(message: str) -> FileFormatError:
        return FileFormatError(path, message)

    if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict):
        raise fail('expected {"hosts": {HOST: {"packages": ..., "services": ..., "vip": ...}}}')
    result: dict[str, HostFacts] = {}
    for name, entry in data["hosts"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("packages", {}), dict):
            raise fail(f"host {name}: expected packages, services and vip")
        packages = {}
        for pkg, versions in entry.get("packages", {}).items():
            if not isinstance(versions, dict):
                raise fail(f"host {name}, package {pkg}: expected installed and candidate")
            installed, candidate = versions.get("installed"), versions.get("candidate")
            for value in (installed, candidate):
                if value is not None and not isinstance(value, str):
                    raise fail(f"host {name}, package {pkg}: versions are strings or null")
            packages[str(pkg)] = PackageFact(str(pkg), installed, candidate)
        lists = {}
        for key in ("services", "held"):
            names = entry.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise fail(f"host {name}: {key} must be a list of service names")
            lists[key] = frozenset(names)
        result[str(name)] = HostFacts(
            str(name),
            packages,
            lists["services"],
            bool(entry.get("vip", False)),
            lists["held"],
        )
    return result


def load_facts(path: str | Path) -> dict[str, HostFacts]:
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FileFormatError(str(source), f"not valid JSON: {exc.msg}", exc.lineno) from None
    except OSError as exc:
        raise FileFormatError(str(source), f"cannot read: {exc.strerror or exc}") from None
    return facts_from_json(data, str(source))
