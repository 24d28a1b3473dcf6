"""Recipe + inventory + the hosts' facts → the rollout engine's plan, and its duration estimate.

The plan, batch by batch:

1. prepare/check: every host with work answers, before any host is touched.
2. prepare/hosts: pause config management (stop, disable, mask); switch the apt repository;
   `apt-get update`; pre-install the role's shared dependencies that are installed and have a
   newer candidate.
3. per project, in the recipe's order: the first controller (the VIP holder) alone: drain its
   backends, hold the services, install, the database steps (once, here), release, check they
   really restarted, health gate, enable; then the other controllers; then each other role
   with its own concurrency, stagger and wait between services; then, if the project has them,
   contract and online data migrations on the first controller.
4. a role visited once (`visits: {compute: once}`) is left out of its projects' batches and
   gets one batch, right after the controller phase of its last project: each host holds all
   of its projects' services at once, installs all their packages in one transaction, and
   releases them in the reverse of the project order (the later projects' agents, e.g. the
   network, are what the earlier ones' services use on the host), with each project's waits.
   Its services run one release behind the controllers meanwhile, as upstream's rolling
   upgrades allow. A project's contract and online migrations wait for its visits.
5. finalize: resume config management; each upgraded project's upgrade check on the first
   controller.

Only hosts with something to upgrade appear, and on each only what it has installed with a
newer candidate: a host already at the release's versions does nothing, and a fleet already
upgraded gets no plan at all.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from interlock.errors import UsageError
from interlock.fleet.inventory import Host
from interlock.rollout.plan import (
    Batch,
    Drain,
    Enable,
    Gate,
    HostPlan,
    Plan,
    PreGates,
    Restarted,
    RunCommand,
    Snapshot,
    Soak,
    Step,
)
from interlock.rollout.planner import fill_probe
from interlock.rollout.schedule import Amount, GroupLimit
from interlock.upgrade import steps
from interlock.upgrade.facts import HostFacts, RoleHosts, roles_by_host
from interlock.upgrade.recipe import Project, Recipe, RoleWork

SNAPSHOT = "snapshot"
FINALIZE = "finalize"
VISIT = "visit"  # batch ids visit/ROLE[+ROLE]: hosts taking all their projects at once
VISIT_LABEL = "interlock-visit"  # a visited host's role, for the batch's per-role limits
# Steps the recipe's estimates do not cover: quick reads of the host.
QUICK_STEP = 1.0

Upgrades = list[tuple[str, str]]  # (package, version to install)
HostWork = dict[str, list[tuple[RoleWork, Upgrades]]]  # host -> what each of its roles upgrades


@dataclass(frozen=True)
class UpgradePlan:
    recipe: Recipe
    plan: Plan | None  # None: nothing to upgrade anywhere
    first_controller: str | None
    estimates: Mapping[str, float] = field(default_factory=dict)  # batch id -> seconds
    notes: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()  # the projects with work, in order
    # host -> the estimated length of each time its services are held (first hold to last
    # release), in plan order; a host whose services are never held is absent
    interruptions: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    visits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role -> its projects

    @property
    def seconds(self) -> float:
        """The makespan: batches run one after another."""
        return sum(self.estimates.values())


def section_of(batch_id: str) -> str:
    """prepare, a project's name or finalize: the part of the upgrade a batch belongs to."""
    return batch_id.partition("/")[0]


def compile_upgrade(
    recipe: Recipe, roles: RoleHosts, facts: Mapping[str, HostFacts]
) -> UpgradePlan:
    return _Compiler(recipe, roles, facts).compile()


class _Compiler:
    def __init__(self, recipe: Recipe, roles: RoleHosts, facts: Mapping[str, HostFacts]) -> None:
        self.recipe = recipe
        self.roles = roles
        self.facts = facts
        self.by_host = roles_by_host(roles)
        missing = [name for name in self.by_host if name not in facts]
        if missing:
            raise UsageError("no facts for host(s) " + ", ".join(missing))
        self.notes: list[str] = []
        self.estimates: dict[str, float] = {}
        self.visited: dict[str, tuple[str, ...]] = {}
        self.limits: list[GroupLimit] = []

    def compile(self) -> UpgradePlan:
        recipe = self.recipe
        first = self.first_controller()
        work = self.project_work()
        preinstall = {
            name: self.facts[name].upgrades(self.dependencies(roles))
            for name, (_, roles) in self.by_host.items()
        }
        touched = [
            host
            for name, (host, _) in self.by_host.items()
            if preinstall[name] or any(name in hosts for hosts in work.values())
        ]
        projects = tuple(p.name for p in recipe.projects if work[p.name])
        paused = [
            host
            for name, (host, _) in self.by_host.items()
            if self.facts[name].held & set(recipe.config_management)
        ]
        if not touched and not paused:
            self.notes.append("every host already has the release's versions: nothing to do")
            return UpgradePlan(recipe, None, first.name if first else None, {}, tuple(self.notes))
        batches: list[Batch] = []
        if touched:
            batches.extend(self.prepare(touched, preinstall))
        else:
            self.notes.append(
                "every host already has the release's versions; config management is still "
                "paused on " + ", ".join(h.name for h in paused) + ": only finalize runs"
            )
        batches.extend(self.projects_and_visits(work, first))
        names = {h.name for h in touched} | {h.name for h in paused}
        resume = [host for host, _ in self.by_host.values() if host.name in names]
        batches.extend(self.finalize(resume, first, projects))
        where = f"first controller {first.name}" if first else "no controller"
        plan = Plan(
            title=f"Upgrade: {recipe.name}",
            batches=tuple(batches),
            limits=tuple(self.limits),
            failure_budget=recipe.failure_budget,
            on_failure=recipe.on_failure,
            schedule=f"prepare, then {len(projects)} project(s) in order ({where} first in "
            "each), then finalize",
        )
        return UpgradePlan(
            recipe,
            plan,
            first.name if first else None,
            dict(self.estimates),
            tuple(self.notes),
            projects,
            self.interruptions(plan),
            self.visited,
        )

    # --- who does what ----------------------------------------------------------------------

    def first_controller(self) -> Host | None:
        controllers = self.roles.get(self.recipe.controller_role, [])
        if not controllers:
            return None
        holders = [host for host in controllers if self.facts[host.name].vip]
        if len(holders) > 1:
            names = ", ".join(host.name for host in holders)
            raise UsageError(
                f"more than one controller holds the VIP by {self.recipe.vip_holder.describe()}: "
                f"{names}"
            )
        if holders:
            return holders[0]
        rule = self.recipe.vip_holder
        if rule.command is not None or rule.label is not None:
            self.notes.append(
                f"no controller is {rule.describe()}: {controllers[0].name} goes first "
                "(inventory order)"
            )
        return controllers[0]

    def dependencies(self, roles: Sequence[str]) -> list[str]:
        names: list[str] = []
        for role in roles:
            names.extend(self.recipe.dependencies_of(role))
        return list(dict.fromkeys(names))

    def project_work(self) -> dict[str, HostWork]:
        """Per project, the hosts with something to upgrade and what."""
        result: dict[str, HostWork] = {}
        for project in self.recipe.projects:
            hosts: HostWork = {}
            for work in project.roles:
                for host in self.roles.get(work.role, []):
                    upgrades = self.facts[host.name].upgrades(work.packages)
                    if upgrades:
                        hosts.setdefault(host.name, []).append((work, upgrades))
            result[project.name] = hosts
        return result

    # --- phases ---------------------------------------------------------------------------

    def prepare(self, touched: list[Host], preinstall: Mapping[str, Upgrades]) -> list[Batch]:
        recipe = self.recipe
        concurrency = recipe.prepare_concurrency
        check = tuple(
            HostPlan(host, (Step("check", steps.answer(), title="answers over SSH"),))
            for host in touched
        )
        prepared = []
        for host in touched:
            host_steps: list[Step] = []
            paused = self.present(host, recipe.config_management)
            if paused:
                host_steps.append(
                    Step(
                        "pause",
                        steps.hold(paused),
                        undo=steps.release(paused),
                        title="pause config management: stop, disable, mask " + ", ".join(paused),
                    )
                )
            repo = recipe.repository
            host_steps.append(
                Step(
                    "repository",
                    steps.write_sources(repo.file, repo.content),
                    sticky=True,
                    title=f"switch the apt repository: write {repo.file}",
                )
            )
            host_steps.append(Step("apt-update", steps.apt_update(), title="apt-get update"))
            packages = preinstall[host.name]
            if packages:
                host_steps.append(
                    Step(
                        "preinstall",
                        steps.install(packages),
                        sticky=True,
                        title="pre-install shared dependencies: " + _versions(packages),
                    )
                )
            prepared.append(HostPlan(host, tuple(host_steps)))
        batches = [
            Batch(
                "prepare/check", "prepare: every host answers", check, min(concurrency, len(check))
            ),
            Batch(
                "prepare/hosts",
                "prepare: pause config management, switch the repository, pre-install",
                tuple(prepared),
                min(concurrency, len(prepared)),
            ),
        ]
        for batch in batches:
            self.estimate(batch, None)
        return batches

    def project(
        self,
        project: Project,
        work: HostWork,
        first: Host | None,
    ) -> list[Batch]:
        name = project.name
        gates = PreGates(probes=self.recipe.pre_gates)
        upgrades = {
            (host, role_work.role): packages
            for host, items in work.items()
            for role_work, packages in items
        }
        batches: list[Batch] = []
        controller = project.role(self.recipe.controller_role)
        if controller is not None and first is not None:
            mine = upgrades.get((first.name, controller.role), [])
            plan = self.host_plan(project, controller, first, mine, first=True)
            if plan.steps:
                batches.append(
                    Batch(
                        f"{name}/first",
                        f"{name}: first controller {first.name} (VIP holder)",
                        (plan,),
                        1,
                        pre_gates=gates,
                    )
                )
        for role_work in project.roles:
            if role_work is not controller and self.recipe.visited_once(role_work.role):
                continue
            plans = tuple(
                self.host_plan(
                    project, role_work, host, upgrades[(host.name, role_work.role)], first=False
                )
                for host in self.roles.get(role_work.role, [])
                if (host.name, role_work.role) in upgrades
                and not (role_work is controller and first is not None and host.name == first.name)
            )
            if not plans:
                continue
            label = "other controllers" if role_work is controller else role_work.role
            batches.append(
                Batch(
                    f"{name}/{role_work.role}",
                    f"{name}: {label}",
                    plans,
                    min(role_work.concurrency, len(plans)),
                    stagger=role_work.stagger,
                    pre_gates=gates,
                )
            )
        for batch in batches:
            self.estimate(batch, project)
        return batches

    def finish(self, project: Project, first: Host | None) -> list[Batch]:
        """Contract and online migrations, once every host of the project runs the new code."""
        steps_ = self.finish_steps(project)
        if not steps_ or first is None:
            return []
        batch = Batch(
            f"{project.name}/finish",
            f"{project.name}: finish the database on {first.name}",
            (HostPlan(first, tuple(steps_)),),
            1,
            pre_gates=PreGates(probes=self.recipe.pre_gates),
        )
        self.estimate(batch, project)
        return [batch]

    def projects_and_visits(self, work: dict[str, HostWork], first: Host | None) -> list[Batch]:
        """Projects in order; each role visited once right after the controller phase of its
        last project; each project's finish after the last of its hosts has the new code."""
        recipe = self.recipe
        order = [p for p in recipe.projects if work[p.name]]
        worked = {
            p.name: {w.role for items in work[p.name].values() for w, _ in items} for p in order
        }
        last: dict[str, int] = {}  # role visited once -> index of its last project with work
        for index, project in enumerate(order):
            for role in worked[project.name]:
                if role != recipe.controller_role and recipe.visited_once(role):
                    last[role] = index
        finish_at = {
            project.name: max([index] + [last[r] for r in worked[project.name] if r in last])
            for index, project in enumerate(order)
        }
        batches: list[Batch] = []
        for index, project in enumerate(order):
            batches.extend(self.project(project, work[project.name], first))
            due = [w.role for w in project.roles if last.get(w.role) == index]
            if due:
                batches.extend(self.visit(due, order, work))
            for done in order:
                if finish_at[done.name] == index:
                    batches.extend(self.finish(done, first))
        return batches

    def finalize(
        self, resume: list[Host], first: Host | None, projects: tuple[str, ...]
    ) -> list[Batch]:
        """Resume config management on `resume`; the upgrade checks on the first controller."""
        recipe = self.recipe
        checks = [
            (project.name, project.upgrade_check)
            for project in recipe.projects
            if project.name in projects and project.upgrade_check is not None
        ]
        hosts = list(resume)
        if first is not None and checks and all(h.name != first.name for h in hosts):
            hosts.append(first)
        plans = []
        for host in hosts:
            host_steps: list[Step] = []
            paused = self.present(host, recipe.config_management)
            if paused and any(h.name == host.name for h in resume):
                host_steps.append(
                    Step(
                        "resume",
                        steps.release(paused),
                        title="resume config management: unmask, enable, start "
                        + ", ".join(paused),
                    )
                )
            if first is not None and host.name == first.name:
                for project_name, check in checks:
                    host_steps.append(
                        Step(
                            f"upgrade-check-{project_name}",
                            steps.upgrade_check(check.argv, check.ok_exits),
                            title=f"{project_name}: upgrade check",
                        )
                    )
            if host_steps:
                plans.append(HostPlan(host, tuple(host_steps)))
        if not plans:
            return []
        batch = Batch(
            FINALIZE,
            "finalize: resume config management, upgrade checks",
            tuple(plans),
            min(recipe.finalize_concurrency, len(plans)),
        )
        self.estimate(batch, None)
        return [batch]

    # --- a role visited once ---------------------------------------------------------------

    def visit(
        self, roles: Sequence[str], order: Sequence[Project], work: dict[str, HostWork]
    ) -> list[Batch]:
        """One batch for the roles due at the same point: each host takes all of its projects
        in one visit; the roles run side by side, each within its own concurrency."""
        plans: list[HostPlan] = []
        concurrency = 0
        staggers = []
        for role in roles:
            mine = [
                (project, role_work)
                for project in order
                for role_work in project.roles
                if role_work.role == role
                and any(w is role_work for items in work[project.name].values() for w, _ in items)
            ]
            hosts = []
            for host in self.roles.get(role, []):
                items = [
                    (project, role_work, upgrades)
                    for project, role_work in mine
                    for w, upgrades in work[project.name].get(host.name, [])
                    if w is role_work
                ]
                if items:
                    labelled = dataclasses.replace(host, labels={**host.labels, VISIT_LABEL: role})
                    hosts.append(self.visit_plan(labelled, items))
            if not hosts:
                continue
            self.visited[role] = tuple(project.name for project, _ in mine)
            limit = min(min(w.concurrency for _, w in mine), len(hosts))
            self.limits.append(GroupLimit(VISIT_LABEL, Amount(limit), value=role))
            concurrency += limit
            staggers.append(max(w.stagger for _, w in mine))
            plans.extend(hosts)
        if not plans:
            return []
        done = [role for role in roles if role in self.visited]
        batch = Batch(
            f"{VISIT}/{'+'.join(done)}",
            "one visit per host: "
            + "; ".join(f"{role} ({', '.join(self.visited[role])})" for role in done),
            tuple(plans),
            concurrency,
            stagger=max(staggers),
            pre_gates=PreGates(probes=self.recipe.pre_gates),
        )
        self.estimate(batch, None)
        return [batch]

    def visit_plan(
        self, host: Host, items: Sequence[tuple[Project, RoleWork, Upgrades]]
    ) -> HostPlan:
        """Hold every service of every project, one install, release in reverse project order."""
        recipe = self.recipe
        groups: list[tuple[Project, RoleWork, list[str]]] = []
        seen: set[str] = set()
        for project, role_work, _ in items:
            services = [s for s in self.present(host, role_work.services) if s not in seen]
            absent = [s for s in role_work.services if s not in self.facts[host.name].services]
            if absent:
                self.notes.append(
                    f"{project.name} on {host.name}: no service {', '.join(absent)} there"
                )
            seen.update(services)
            groups.append((project, role_work, services))
        services = [s for _, _, group in groups for s in group]
        packages = list(dict.fromkeys(p for _, _, upgrades in items for p in upgrades))
        keep = recipe.cleanup_services == "leave-stopped"
        start_order = [s for _, _, group in reversed(groups) for s in group]
        result: list[Step] = []
        if services:
            result.append(Step(SNAPSHOT, Snapshot(tuple(services)), sticky=True))
            result.append(_hold_step("hold", services, start_order, keep))
        result.append(_install_step(packages))
        releases: list[Step] = []
        for project, role_work, group in reversed(groups):
            if not group:
                continue
            if role_work.service_wait:
                for service in group:
                    releases.append(
                        Step(
                            f"release-{service}",
                            steps.release([service]),
                            title=f"{project.name}: unmask, enable, start {service}",
                        )
                    )
                    releases.append(
                        Step(
                            f"wait-{service}",
                            Soak(role_work.service_wait),
                            title=f"wait {role_work.service_wait:g} s after starting {service}",
                        )
                    )
            else:
                releases.append(
                    Step(
                        f"release-{project.name}",
                        steps.release(group),
                        title=f"{project.name}: unmask, enable, start " + ", ".join(group),
                    )
                )
        ids = [step.id for step in releases]
        if len(set(ids)) != len(ids):
            raise UsageError(
                f"{host.name}: a project and a service share a name ({', '.join(ids)}): "
                "rename the project"
            )
        if releases:
            # The hold is undone by the last release: a failure before it releases them all
            # (releasing a service already started changes nothing).
            last = max(i for i, step in enumerate(releases) if step.id.startswith("release-"))
            releases[last] = dataclasses.replace(releases[last], undoes="hold")
        result.extend(releases)
        if services:
            result.append(Step("restarted", Restarted(SNAPSHOT, recipe.health.deadline)))
        probes = tuple(
            fill_probe(probe, host) for _, role_work, _ in items for probe in role_work.health
        )
        if probes:
            gate = recipe.health
            result.append(Step("health", Gate(probes, gate.passes, gate.interval, gate.deadline)))
        return HostPlan(host, tuple(result))

    # --- one host in one project -------------------------------------------------------------

    def present(self, host: Host, services: Sequence[str]) -> list[str]:
        have = self.facts[host.name].services
        return [name for name in services if name in have]

    def host_plan(
        self,
        project: Project,
        work: RoleWork,
        host: Host,
        upgrades: Upgrades,
        *,
        first: bool,
    ) -> HostPlan:
        recipe = self.recipe
        name = project.name
        db_steps = self.db_steps(project) if first else []
        if not upgrades:
            # The first controller already has the code: only the database steps remain.
            return HostPlan(host, tuple(db_steps))
        services = self.present(host, work.services)
        absent = [s for s in work.services if s not in services]
        if absent:
            self.notes.append(f"{name} on {host.name}: no service {', '.join(absent)} there")
        result: list[Step] = []
        if services:
            result.append(Step(SNAPSHOT, Snapshot(tuple(services)), sticky=True))
        backends = project.backends if work.role == recipe.controller_role else ()
        leave = recipe.cleanup_backends == "leave-drained"
        for backend in backends:
            enable = Enable(host.address, backend.port, recipe.drain_timeout)
            result.append(
                Step(
                    f"drain-{backend.name}",
                    Drain(
                        host.address, backend.port, recipe.drain_timeout, recipe.on_drain_timeout
                    ),
                    undo=None if leave else enable,
                    left_on_failure="its servers stay drained (on_failure.backends: leave-drained)"
                    if leave
                    else None,
                    title=f"drain {backend.name} (servers at {host.address}:{backend.port})",
                )
            )
        groups = [[s] for s in services] if work.service_wait else ([services] if services else [])
        for group in groups:
            suffix = f"-{group[0]}" if work.service_wait else ""
            keep = recipe.cleanup_services == "leave-stopped"
            result.append(_hold_step(f"hold{suffix}", group, group, keep))
        result.append(_install_step(upgrades))
        result.extend(db_steps)
        for group in groups:
            suffix = f"-{group[0]}" if work.service_wait else ""
            result.append(
                Step(
                    f"release{suffix}",
                    steps.release(group),
                    undoes=f"hold{suffix}",
                    title="unmask, enable, start " + ", ".join(group),
                )
            )
            if work.service_wait:
                result.append(
                    Step(
                        f"wait-{group[0]}",
                        Soak(work.service_wait),
                        title=f"wait {work.service_wait:g} s after starting {group[0]}",
                    )
                )
        if services:
            result.append(Step("restarted", Restarted(SNAPSHOT, recipe.health.deadline)))
        if work.health:
            gate = recipe.health
            probes = tuple(fill_probe(probe, host) for probe in work.health)
            result.append(Step("health", Gate(probes, gate.passes, gate.interval, gate.deadline)))
        for backend in backends:
            result.append(
                Step(
                    f"enable-{backend.name}",
                    Enable(host.address, backend.port, recipe.drain_timeout),
                    undoes=f"drain-{backend.name}",
                    title=f"enable {backend.name}; wait until UP",
                )
            )
        return HostPlan(host, tuple(result))

    def db_steps(self, project: Project) -> list[Step]:
        db = project.db
        result = []
        for phase, commands in (("sync", db.sync), ("expand", db.expand), ("migrate", db.migrate)):
            for number, argv in enumerate(commands, start=1):
                suffix = f"-{number}" if len(commands) > 1 else ""
                result.append(
                    Step(
                        f"db-{phase}{suffix}",
                        steps.database(argv),
                        sticky=True,
                        title=f"database {phase} (once per project, here)",
                    )
                )
        return result

    def finish_steps(self, project: Project) -> list[Step]:
        db = project.db
        result = []
        for number, argv in enumerate(db.contract, start=1):
            suffix = f"-{number}" if len(db.contract) > 1 else ""
            result.append(
                Step(
                    f"db-contract{suffix}",
                    steps.database(argv),
                    sticky=True,
                    title="database contract (every host runs the new code)",
                )
            )
        if db.online_migrations is not None:
            result.append(
                Step(
                    "online-migrations",
                    steps.online_migrations(db.online_migrations, db.online_delay, db.online_limit),
                    sticky=True,
                    title="online data migrations: exit 0 done, 1 run again, 2 stop",
                )
            )
        return result

    # --- how long ---------------------------------------------------------------------------

    def estimate(self, batch: Batch, project: Project | None) -> None:
        if batch.hosts:
            hosts = [
                (self.host_seconds(plan, project), plan.host.labels.get(VISIT_LABEL))
                for plan in batch.hosts
            ]
            limits = {limit.value: int(limit.amount.value) for limit in self.limits}
            self.estimates[batch.id] = window_seconds(
                hosts, batch.concurrency, batch.stagger, limits
            )

    def interruptions(self, plan: Plan) -> dict[str, tuple[float, ...]]:
        """Per host, each time its services are held: from the first hold to the last release
        (config management's pause for the whole upgrade is not counted)."""
        found: dict[str, list[float]] = {}
        for batch in plan.batches:
            project = next(
                (p for p in self.recipe.projects if p.name == section_of(batch.id)), None
            )
            for host_plan in batch.hosts:
                ids = [step.id.partition("-")[0] for step in host_plan.steps]
                if "hold" not in ids:
                    continue
                start = ids.index("hold")
                end = len(ids) - 1 - ids[::-1].index("release")
                held = host_plan.steps[start : end + 1]
                seconds = sum(self.step_seconds(step, project) for step in held)
                found.setdefault(host_plan.host.name, []).append(seconds)
        return {name: tuple(times) for name, times in found.items()}

    def host_seconds(self, plan: HostPlan, project: Project | None) -> float:
        return sum(self.step_seconds(step, project) for step in plan.steps)

    def step_seconds(self, step: Step, project: Project | None) -> float:
        if isinstance(step.action, Soak):
            return step.action.seconds
        kind = _ESTIMATE_KINDS.get(step.id.partition("-")[0]) or _ESTIMATE_KINDS.get(step.id)
        if kind is None:
            return QUICK_STEP
        seconds = self.recipe.estimate(kind, project)
        if kind in ("hold", "release") and isinstance(step.action, RunCommand):
            # The scripts stop or start the services one after another.
            seconds *= max(1, len(step.action.argv) - 4)  # sh -c SCRIPT sh SERVICE...
        return seconds


_ESTIMATE_KINDS = {
    "check": "check",
    "pause": "pause",
    "resume": "pause",
    "repository": "repository",
    "apt-update": "apt_update",
    "preinstall": "preinstall",
    "drain": "drain",
    "snapshot": "snapshot",
    "hold": "hold",
    "install": "install",
    "db": "db",
    "release": "release",
    "restarted": "restarted",
    "health": "health",
    "enable": "enable",
    "online-migrations": "online_migrations",
    "upgrade": "upgrade_check",
}


def window_seconds(
    hosts: Sequence[tuple[float, str | None]],
    concurrency: int,
    stagger: float,
    limits: Mapping[str | None, int] | None = None,
) -> float:
    """How long a batch takes in the executor's sliding window: hosts (seconds, group) start in
    order, each as soon as a slot is free, its group is under its limit and `stagger` has
    passed since the previous start; the batch ends when the last host does."""
    caps = limits or {}
    pending = list(hosts)
    running: list[tuple[float, str | None]] = []
    now = 0.0
    last: float | None = None
    while pending or running:
        running = [item for item in running if item[0] > now]
        if not (pending or running):
            break
        if pending and len(running) < concurrency and (last is None or now >= last + stagger):
            busy = Counter(group for _, group in running)
            pick = next(
                (
                    index
                    for index, (_, group) in enumerate(pending)
                    if group not in caps or busy[group] < caps[group]
                ),
                None,
            )
            if pick is not None:
                length, group = pending.pop(pick)
                running.append((now + length, group))
                last = now
                continue
        wakes = [end for end, _ in running]
        if pending and last is not None and now < last + stagger:
            wakes.append(last + stagger)
        now = min(wakes)
    return now


def _hold_step(name: str, services: list[str], release_order: list[str], keep: bool) -> Step:
    """Stop, disable and mask `services`; undone by releasing them in `release_order` unless the
    recipe leaves them stopped on a failure."""
    return Step(
        name,
        steps.hold(services),
        undo=None if keep else steps.release(release_order),
        left_on_failure="its services stay stopped (on_failure.services: leave-stopped)"
        if keep
        else None,
        title="stop, disable, mask " + ", ".join(services),
    )


def _install_step(packages: Sequence[tuple[str, str]]) -> Step:
    return Step(
        "install", steps.install(packages), sticky=True, title="install " + _versions(packages)
    )


def _versions(packages: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {version}" for name, version in packages)
