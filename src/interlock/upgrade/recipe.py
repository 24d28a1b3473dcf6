"""A release upgrade as data: the recipe file, validated into frozen records.

Every mistake is an error naming the file and the line. The layout (see recipes/openstack.yaml
for a full one):

```yaml
recipe: Example release 2                 # a name for people
repository:                               # the apt source the release comes from
  file: /etc/apt/sources.list.d/example.list
  content: "deb http://mirror.example/debian bookworm-release2 main\\n"
roles: {controller: controllers, compute: computes}   # role -> inventory group or pattern
controller_role: controller               # the role whose first host runs the database steps
visits: {compute: once}                   # once: one visit per host for all its projects
vip_holder: {command: [sh, -c, "ip -o addr show | grep -qw 10.0.0.10"]}  # or {label: vip}
drain: {timeout: 60s, on_timeout: fail}
health: {passes: 3, interval: 2s, deadline: 5m}
pre_gates: ["rabbitmq=5000@http://10.0.0.10:15672"]  # before every project batch
failures: {budget: 0, on_failure: pause}
on_failure: {backends: enable, services: start}  # cleanup of a host that fails mid-project
estimates: {install: 30s, db: 1m}         # for the duration estimate of `upgrade plan`; one
                                          # step each, but hold and release per service
prepare:
  concurrency: 24
  config_management: [puppet]             # stopped, disabled and masked for the whole upgrade
  dependencies: {controller: [python3-oslo.db], compute: [python3-os-vif]}
finalize: {concurrency: 24}
projects:                                 # in order
  - name: example
    backends: {example-api: 8764}         # haproxy servers on the controllers, by port
    db:                                   # a command, or a list of commands (each a string
      sync: example-manage db sync        # or an argv list); or expand / migrate / contract
      online_migrations: example-manage db online_data_migrations
    upgrade_check: example-status upgrade check
    roles:
      controller:
        packages: [example-api, example-scheduler]
        services: [example-api, example-scheduler]
        health: ["http://{address}:8764/healthcheck"]
      compute: {packages: [example-agent], services: [example-agent], concurrency: 3,
                service_wait: 30s}
```
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from interlock.documents import MarkedMap, MarkedReader, MarkedSeq, load_yaml, read_text
from interlock.errors import FileFormatError
from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.rollout.plan import Probe
from interlock.rollout.schedule import NO_FAILURES, Amount
from interlock.rollout.spec import parse_argv, parse_duration, parse_gate, parse_pre_gate

T = TypeVar("T")
Argv = tuple[str, ...]

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters.
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
SOURCES_DIR = "/etc/apt/sources.list.d/"
RESERVED_ROLES = frozenset({"first", "finish"})
# per-project: a role's hosts are visited once per project (held, upgraded, released each time);
# once: one visit per host takes all of its projects, after every controller phase they need.
VISIT_MODES = ("per-project", "once")

ESTIMATE_KEYS = (
    "check",
    "pause",
    "repository",
    "apt_update",
    "preinstall",
    "drain",
    "snapshot",
    "hold",
    "install",
    "db",
    "release",
    "restarted",
    "health",
    "enable",
    "online_migrations",
    "upgrade_check",
)
DEFAULT_ESTIMATES = {
    "check": 1.0,
    "pause": 3.0,
    "repository": 1.0,
    "apt_update": 20.0,
    "preinstall": 60.0,
    "drain": 5.0,
    "snapshot": 1.0,
    "hold": 5.0,
    "install": 30.0,
    "db": 60.0,
    "release": 5.0,
    "restarted": 1.0,
    "health": 10.0,
    "enable": 3.0,
    "online_migrations": 60.0,
    "upgrade_check": 10.0,
}

_TOP_KEYS = (
    "recipe",
    "repository",
    "roles",
    "controller_role",
    "visits",
    "vip_holder",
    "drain",
    "health",
    "pre_gates",
    "failures",
    "on_failure",
    "estimates",
    "prepare",
    "finalize",
    "projects",
)
_REPOSITORY_KEYS = ("file", "content")
_VIP_KEYS = ("command", "label")
_DRAIN_KEYS = ("timeout", "on_timeout")
_HEALTH_KEYS = ("passes", "interval", "deadline")
_FAILURE_KEYS = ("budget", "on_failure")
_CLEANUP_KEYS = ("backends", "services")
_PREPARE_KEYS = ("concurrency", "config_management", "dependencies")
_FINALIZE_KEYS = ("concurrency",)
_PROJECT_KEYS = ("name", "backends", "db", "upgrade_check", "roles", "estimates")
_DB_KEYS = (
    "sync",
    "expand",
    "migrate",
    "contract",
    "online_migrations",
    "online_delay",
    "online_limit",
)
_CHECK_KEYS = ("command", "ok_exits")
_ROLE_KEYS = ("packages", "services", "health", "concurrency", "stagger", "service_wait")


@dataclass(frozen=True)
class Repository:
    file: str
    content: str


@dataclass(frozen=True)
class VipHolder:
    """How to find the controller holding the API VIP: a command exiting 0 there, or a label."""

    command: Argv | None = None
    label: str | None = None

    def describe(self) -> str:
        if self.command is not None:
            return "the controller where `" + " ".join(self.command) + "` exits 0"
        if self.label is not None:
            return f"the controller labelled {self.label}=true"
        return "the first controller in inventory order"


@dataclass(frozen=True)
class Backend:
    """A haproxy service of the project; its servers on a controller are found by port."""

    name: str
    port: int


@dataclass(frozen=True)
class Command:
    argv: Argv
    ok_exits: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Database:
    """Run once per project, on the first controller. `sync` or expand → migrate → contract;
    then online data migrations, repeated while they exit 1 and stopped when they exit 2."""

    sync: tuple[Argv, ...] = ()
    expand: tuple[Argv, ...] = ()
    migrate: tuple[Argv, ...] = ()
    contract: tuple[Argv, ...] = ()
    online_migrations: Argv | None = None
    online_delay: float = 5.0
    online_limit: int = 100

    @property
    def empty(self) -> bool:
        return not (
            self.sync or self.expand or self.migrate or self.contract or self.online_migrations
        )


@dataclass(frozen=True)
class RoleWork:
    """What a project upgrades on the hosts of one role."""

    role: str
    packages: tuple[str, ...]
    services: tuple[str, ...] = ()
    health: tuple[Probe, ...] = ()
    concurrency: int = 1
    stagger: float = 0.0
    service_wait: float = 0.0


@dataclass(frozen=True)
class Project:
    name: str
    roles: tuple[RoleWork, ...]
    backends: tuple[Backend, ...] = ()
    db: Database = field(default_factory=Database)
    upgrade_check: Command | None = None
    estimates: tuple[tuple[str, float], ...] = ()

    def role(self, name: str) -> RoleWork | None:
        return next((work for work in self.roles if work.role == name), None)


@dataclass(frozen=True)
class Role:
    name: str
    hosts: str  # an inventory pattern: a group, a name, a glob, a:b


@dataclass(frozen=True)
class HealthGate:
    passes: int = 3
    interval: float = 2.0
    deadline: float = 300.0


@dataclass(frozen=True)
class Recipe:
    path: str | None
    name: str
    repository: Repository
    roles: tuple[Role, ...]
    projects: tuple[Project, ...]
    controller_role: str = "controller"
    visits: tuple[tuple[str, str], ...] = ()  # role -> "once" (others per project)
    vip_holder: VipHolder = field(default_factory=VipHolder)
    drain_timeout: float = 60.0
    on_drain_timeout: str = "fail"
    health: HealthGate = field(default_factory=HealthGate)
    pre_gates: tuple[Probe, ...] = ()
    failure_budget: Amount = NO_FAILURES
    on_failure: str = "pause"
    cleanup_backends: str = "enable"  # enable | leave-drained
    cleanup_services: str = "start"  # start | leave-stopped
    estimates: tuple[tuple[str, float], ...] = ()
    prepare_concurrency: int = 24
    config_management: tuple[str, ...] = ()
    dependencies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    finalize_concurrency: int = 24

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    def visited_once(self, role: str) -> bool:
        return dict(self.visits).get(role) == "once"

    def dependencies_of(self, role: str) -> tuple[str, ...]:
        return dict(self.dependencies).get(role, ())

    def estimate(self, kind: str, project: Project | None = None) -> float:
        """Seconds one step of `kind` is expected to take, for the plan's duration estimate."""
        if project is not None and kind in dict(project.estimates):
            return dict(project.estimates)[kind]
        return dict(self.estimates).get(kind, DEFAULT_ESTIMATES[kind])

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package the recipe names, once, in order of appearance."""
        names: list[str] = []
        for _, packages in self.dependencies:
            names.extend(packages)
        for project in self.projects:
            for work in project.roles:
                names.extend(work.packages)
        return tuple(dict.fromkeys(names))

    @property
    def services(self) -> tuple[str, ...]:
        names = list(self.config_management)
        for project in self.projects:
            for work in project.roles:
                names.extend(work.services)
        return tuple(dict.fromkeys(names))


def load_recipe(path: str | Path) -> Recipe:
    source = Path(path)
    data = load_yaml(read_text(source), str(source))
    if not isinstance(data, MarkedMap):
        raise FileFormatError(str(source), "a recipe must be a YAML mapping", 1)
    return _RecipeReader(str(source)).read(data)


def builtin_recipe_path(name: str) -> Path:
    """A recipe shipped with interlock (`openstack`), by name."""
    return Path(__file__).with_name("recipes") / f"{name}.yaml"


class _RecipeReader(MarkedReader):
    def count(self, data: MarkedMap, key: str, where: str, minimum: int = 1) -> int:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{where}.{key} must be a whole number ≥ {minimum}", data.line_of(key))
        return value

    def names(
        self, data: MarkedMap, key: str, check: Callable[[str], str], where: str
    ) -> tuple[str, ...]:
        """A list of names (or one name), each checked, without repeats."""
        raw = data[key]
        items: list[object] = [raw] if isinstance(raw, str) else raw
        lines = raw.item_lines if isinstance(raw, MarkedSeq) else [data.line_of(key)]
        if not isinstance(items, list):
            raise self.fail(f"{where}.{key} must be a list of names", data.line_of(key))
        result: list[str] = []
        for item, line in zip(items, lines, strict=True):
            if not isinstance(item, str):
                raise self.fail(f"{where}.{key}: {item!r} is not a name", line)
            try:
                name = check(item)
            except ValueError as exc:
                raise self.fail(f"{where}.{key}: {exc}", line) from None
            if name in result:
                raise self.fail(f"{where}.{key}: {name} is listed twice", line)
            result.append(name)
        return tuple(result)

    def commands(self, data: MarkedMap, key: str, where: str) -> tuple[Argv, ...]:
        """One command (a string), or a list of commands, each a string or an argv list."""
        raw = data[key]
        items: list[object] = list(raw) if isinstance(raw, MarkedSeq) else [raw]
        lines = raw.item_lines if isinstance(raw, MarkedSeq) else [data.line_of(key)]
        if not items:
            raise self.fail(f"{where}.{key} lists no command", data.line_of(key))
        result = []
        for item, line in zip(items, lines, strict=True):
            try:
                result.append(parse_argv(item))
            except ValueError as exc:
                raise self.fail(f"{where}.{key}: {exc}", line) from None
        return tuple(result)

    def command(self, data: MarkedMap, key: str, where: str) -> Argv:
        """One command: a string split like sh would, or an argv list."""
        try:
            return parse_argv(data[key])
        except ValueError as exc:
            raise self.fail(f"{where}.{key}: {exc}", data.line_of(key)) from None

    def estimates(self, data: MarkedMap, key: str, where: str) -> tuple[tuple[str, float], ...]:
        section = self.mapping(data, key, ESTIMATE_KEYS)
        return tuple(
            (name, self.value(section, name, parse_duration, f"{where}.{key}")) for name in section
        )

    # --- the recipe ---------------------------------------------------------------------------

    def read(self, data: MarkedMap) -> Recipe:
        self.check_keys(data, _TOP_KEYS, "the recipe")
        for key in ("recipe", "repository", "roles", "projects"):
            if key not in data:
                raise self.fail(f"the recipe needs {key!r}", data.line)
        name = data["recipe"]
        if not isinstance(name, str) or not name.strip():
            raise self.fail("recipe must be a name", data.line_of("recipe"))
        roles = self.roles(data)
        known_roles = {role.name for role in roles}
        changes: dict[str, Any] = {}
        if "controller_role" in data:
            changes["controller_role"] = self.choice(
                data, "controller_role", sorted(known_roles), "recipe"
            )
        controller = changes.get("controller_role", "controller")
        if controller not in known_roles:
            raise self.fail(
                f"roles: no {controller!r} role (name the role that runs the database steps "
                "with controller_role)",
                data.line_of("roles"),
            )
        if "visits" in data:
            changes["visits"] = self.visits(data, known_roles, controller)
        if "vip_holder" in data:
            changes["vip_holder"] = self.vip_holder(data)
        drain = self.mapping(data, "drain", _DRAIN_KEYS)
        if "timeout" in drain:
            timeout = self.value(drain, "timeout", parse_duration, "drain")
            if timeout <= 0:
                # A drain timeout of 0 must not mean "wait forever" (nor "do not wait").
                raise self.fail("drain.timeout must be more than 0", drain.line_of("timeout"))
            changes["drain_timeout"] = timeout
        if "on_timeout" in drain:
            changes["on_drain_timeout"] = self.choice(
                drain, "on_timeout", ("fail", "force", "continue"), "drain"
            )
        if "health" in data:
            changes["health"] = self.health(data)
        if "pre_gates" in data:
            changes["pre_gates"] = self.pre_gates(data)
        failures = self.mapping(data, "failures", _FAILURE_KEYS)
        if "budget" in failures:
            changes["failure_budget"] = self.value(failures, "budget", Amount.parse, "failures")
        if "on_failure" in failures:
            changes["on_failure"] = self.choice(
                failures, "on_failure", ("pause", "abort"), "failures"
            )
        cleanup = self.mapping(data, "on_failure", _CLEANUP_KEYS)
        if "backends" in cleanup:
            changes["cleanup_backends"] = self.choice(
                cleanup, "backends", ("enable", "leave-drained"), "on_failure"
            )
        if "services" in cleanup:
            changes["cleanup_services"] = self.choice(
                cleanup, "services", ("start", "leave-stopped"), "on_failure"
            )
        changes["estimates"] = self.estimates(data, "estimates", "recipe")
        prepare = self.mapping(data, "prepare", _PREPARE_KEYS)
        if "concurrency" in prepare:
            changes["prepare_concurrency"] = self.count(prepare, "concurrency", "prepare")
        if "config_management" in prepare:
            changes["config_management"] = self.names(
                prepare, "config_management", check_service, "prepare"
            )
        if "dependencies" in prepare:
            changes["dependencies"] = self.dependencies(prepare, known_roles)
        finalize = self.mapping(data, "finalize", _FINALIZE_KEYS)
        if "concurrency" in finalize:
            changes["finalize_concurrency"] = self.count(finalize, "concurrency", "finalize")
        projects = self.projects(data, known_roles, controller)
        return Recipe(
            path=self.path,
            name=name.strip(),
            repository=self.repository(data),
            roles=roles,
            projects=projects,
            **changes,
        )

    def repository(self, data: MarkedMap) -> Repository:
        section = self.mapping(data, "repository", _REPOSITORY_KEYS)
        for key in _REPOSITORY_KEYS:
            if key not in section:
                raise self.fail(f"repository needs {key!r}", section.line)
        file = section["file"]
        if (
            not isinstance(file, str)
            or not file.startswith(SOURCES_DIR)
            or "/" in file[len(SOURCES_DIR) :]
            or not file.endswith((".list", ".sources"))
            or not NAME_RE.fullmatch(file[len(SOURCES_DIR) :].rsplit(".", 1)[0].lower())
        ):
            raise self.fail(
                f"repository.file must be a .list or .sources file in {SOURCES_DIR}, not {file!r}",
                section.line_of("file"),
            )
        content = section["content"]
        if not isinstance(content, str) or not content.strip():
            raise self.fail(
                "repository.content must be the file's text", section.line_of("content")
            )
        if not content.endswith("\n"):
            content += "\n"
        return Repository(file, content)

    def roles(self, data: MarkedMap) -> tuple[Role, ...]:
        section = self.mapping(data, "roles", None)
        if not section:
            raise self.fail("roles must map role names to inventory groups", data.line_of("roles"))
        roles = []
        for name, pattern in section.items():
            line = section.line_of(name)
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise self.fail(f"roles: {name!r} is not a role name (a-z, 0-9, _ and -)", line)
            if name in RESERVED_ROLES:
                # A project's batches are PROJECT/first, PROJECT/ROLE..., PROJECT/finish.
                raise self.fail(f"roles: {name!r} is reserved, pick another role name", line)
            if not isinstance(pattern, str) or not pattern.strip():
                raise self.fail(f"roles.{name} must be an inventory group or host pattern", line)
            roles.append(Role(name, pattern.strip()))
        return tuple(roles)

    def visits(
        self, data: MarkedMap, roles: set[str], controller: str
    ) -> tuple[tuple[str, str], ...]:
        section = self.mapping(data, "visits", None)
        result = []
        for role in section:
            line = section.line_of(role)
            if role not in roles:
                raise self.fail(
                    f"visits: no role {role!r} (roles: {', '.join(sorted(roles))})", line
                )
            mode = self.choice(section, role, VISIT_MODES, "visits")
            if role == controller and mode == "once":
                # The controllers take the projects one by one: the upstream order and each
                # project's database steps on the VIP holder depend on it.
                raise self.fail(
                    f"visits.{role}: the {controller} role is visited per project, not once", line
                )
            result.append((str(role), mode))
        return tuple(result)

    def vip_holder(self, data: MarkedMap) -> VipHolder:
        section = self.mapping(data, "vip_holder", _VIP_KEYS)
        if len(section) != 1:
            raise self.fail("vip_holder needs exactly one of command, label", section.line)
        if "command" in section:
            return VipHolder(command=self.command(section, "command", "vip_holder"))
        label = section["label"]
        if not isinstance(label, str) or not NAME_RE.fullmatch(label):
            raise self.fail("vip_holder.label must be a label name", section.line_of("label"))
        return VipHolder(label=label)

    def health(self, data: MarkedMap) -> HealthGate:
        section = self.mapping(data, "health", _HEALTH_KEYS)
        gate = HealthGate()
        passes = self.count(section, "passes", "health") if "passes" in section else gate.passes
        interval, deadline = gate.interval, gate.deadline
        if "interval" in section:
            interval = self.value(section, "interval", parse_duration, "health")
        if "deadline" in section:
            deadline = self.value(section, "deadline", parse_duration, "health")
            if deadline <= 0:
                raise self.fail("health.deadline must be more than 0", section.line_of("deadline"))
        return HealthGate(passes, interval, deadline)

    def pre_gates(self, data: MarkedMap) -> tuple[Probe, ...]:
        raw = data["pre_gates"]
        if not isinstance(raw, MarkedSeq):
            raise self.fail("pre_gates must be a list of checks", data.line_of("pre_gates"))
        probes = []
        for item, line in zip(raw, raw.item_lines, strict=True):
            try:
                probes.append(parse_pre_gate(str(item)))
            except ValueError as exc:
                raise self.fail(f"pre_gates: {exc}", line) from None
        return tuple(probes)

    def dependencies(
        self, prepare: MarkedMap, roles: set[str]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        section = self.mapping(prepare, "dependencies", None)
        result = []
        for role in section:
            if role not in roles:
                raise self.fail(
                    f"prepare.dependencies: no role {role!r} (roles: {', '.join(sorted(roles))})",
                    section.line_of(role),
                )
            packages = self.names(section, role, check_package, "prepare.dependencies")
            result.append((str(role), packages))
        return tuple(result)

    def projects(self, data: MarkedMap, roles: set[str], controller: str) -> tuple[Project, ...]:
        raw = data["projects"]
        if not isinstance(raw, MarkedSeq) or not raw:
            raise self.fail(
                "projects must be a list of projects, in order", data.line_of("projects")
            )
        projects: list[Project] = []
        for item, line in zip(raw, raw.item_lines, strict=True):
            if not isinstance(item, MarkedMap):
                raise self.fail("a project is a mapping with a name and roles", line)
            project = self.project(item, roles, controller)
            if any(p.name == project.name for p in projects):
                raise self.fail(f"project {project.name} is listed twice", item.line_of("name"))
            projects.append(project)
        return tuple(projects)

    def project(self, item: MarkedMap, roles: set[str], controller: str) -> Project:
        self.check_keys(item, _PROJECT_KEYS, "project")
        if "name" not in item:
            raise self.fail("a project needs a name", item.line)
        name = item["name"]
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(
                f"project name {name!r} must be lower case letters, digits, _ and -",
                item.line_of("name"),
            )
        where = f"project {name}"
        if "roles" not in item:
            raise self.fail(f"{where} needs roles", item.line)
        section = self.mapping(item, "roles", None)
        works = []
        for role in section:
            if role not in roles:
                raise self.fail(
                    f"{where}: no role {role!r} (roles: {', '.join(sorted(roles))})",
                    section.line_of(role),
                )
            works.append(self.role_work(section, str(role), where))
        if not works:
            raise self.fail(f"{where}: roles is empty", item.line_of("roles"))
        backends = self.backends(item, where) if "backends" in item else ()
        db = self.database(item, where) if "db" in item else Database()
        if (backends or not db.empty) and not any(w.role == controller for w in works):
            raise self.fail(
                f"{where}: backends and database steps belong to the {controller} role, "
                f"which the project does not list",
                item.line_of("roles"),
            )
        check = self.upgrade_check(item, where) if "upgrade_check" in item else None
        return Project(
            name=name,
            roles=tuple(works),
            backends=backends,
            db=db,
            upgrade_check=check,
            estimates=self.estimates(item, "estimates", where),
        )

    def role_work(self, section: MarkedMap, role: str, where: str) -> RoleWork:
        value = section[role]
        if not isinstance(value, MarkedMap):
            raise self.fail(f"{where}.{role} must be a mapping", section.line_of(role))
        at = f"{where}.{role}"
        self.check_keys(value, _ROLE_KEYS, at)
        if "packages" not in value:
            raise self.fail(f"{at} needs packages", value.line)
        packages = self.names(value, "packages", check_package, at)
        if not packages:
            raise self.fail(f"{at}.packages is empty", value.line_of("packages"))
        services = self.names(value, "services", check_service, at) if "services" in value else ()
        health: tuple[Probe, ...] = ()
        if "health" in value:
            raw = value["health"]
            items = [raw] if isinstance(raw, str) else raw
            lines = raw.item_lines if isinstance(raw, MarkedSeq) else [value.line_of("health")]
            if not isinstance(items, list):
                raise self.fail(f"{at}.health must be a list of probes", value.line_of("health"))
            probes = []
            for probe, line in zip(items, lines, strict=True):
                try:
                    probes.append(parse_gate(str(probe)))
                except ValueError as exc:
                    raise self.fail(f"{at}.health: {exc}", line) from None
            health = tuple(probes)
        work = RoleWork(role, packages, services, health)
        changes: dict[str, Any] = {}
        if "concurrency" in value:
            changes["concurrency"] = self.count(value, "concurrency", at)
        for key in ("stagger", "service_wait"):
            if key in value:
                changes[key] = self.value(value, key, parse_duration, at)
        return dataclasses.replace(work, **changes)

    def backends(self, item: MarkedMap, where: str) -> tuple[Backend, ...]:
        section = self.mapping(item, "backends", None)
        result = []
        for name, port in section.items():
            line = section.line_of(name)
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
                raise self.fail(f"{where}.backends: {name!r} is not a haproxy name", line)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise self.fail(
                    f"{where}.backends.{name} must be the servers' TCP port, not {port!r}", line
                )
            result.append(Backend(name, port))
        return tuple(result)

    def database(self, item: MarkedMap, where: str) -> Database:
        section = self.mapping(item, "db", _DB_KEYS)
        at = f"{where}.db"
        phased = [key for key in ("expand", "migrate", "contract") if key in section]
        if "sync" in section and phased:
            raise self.fail(
                f"{at}: give sync or expand/migrate/contract, not both",
                section.line_of(phased[0]),
            )
        changes: dict[str, Any] = {}
        for key in ("sync", "expand", "migrate", "contract"):
            if key in section:
                changes[key] = self.commands(section, key, at)
        if "online_migrations" in section:
            changes["online_migrations"] = self.command(section, "online_migrations", at)
        elif "online_delay" in section or "online_limit" in section:
            key = "online_delay" if "online_delay" in section else "online_limit"
            raise self.fail(f"{at}.{key} goes with online_migrations", section.line_of(key))
        if "online_delay" in section:
            changes["online_delay"] = self.value(section, "online_delay", parse_duration, at)
        if "online_limit" in section:
            changes["online_limit"] = self.count(section, "online_limit", at)
        return Database(**changes)

    def upgrade_check(self, item: MarkedMap, where: str) -> Command:
        raw = item["upgrade_check"]
        if isinstance(raw, MarkedMap):
            self.check_keys(raw, _CHECK_KEYS, f"{where}.upgrade_check")
            if "command" not in raw:
                raise self.fail(f"{where}.upgrade_check needs command", raw.line)
            argv = self.command(raw, "command", f"{where}.upgrade_check")
            exits = raw.get("ok_exits", [0])
            if (
                not isinstance(exits, list)
                or not exits
                or not all(
                    isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 256
                    for code in exits
                )
            ):
                raise self.fail(
                    f"{where}.upgrade_check.ok_exits must list exit codes",
                    raw.line_of("ok_exits"),
                )
            return Command(argv, tuple(exits))
        return Command(self.command(item, "upgrade_check", where))


def check_package(name: str) -> str:
    if not PACKAGE_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a Debian package name")
    return name


def check_service(name: str) -> str:
    if not is_valid_service_name(name) or "/" in name:
        raise ValueError(f"{name!r} is not a service name")
    return canonical_service(name)
