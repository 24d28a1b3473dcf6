"""Recipes: the shipped OpenStack recipe loads; every mistake names the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from interlock.errors import FileFormatError
from interlock.rollout.plan import HttpProbe, RabbitQueuesProbe, TcpProbe
from interlock.upgrade.recipe import builtin_recipe_path, load_recipe

GOOD = """\
recipe: Example release 2
repository:
  file: /etc/apt/sources.list.d/example.list
  content: "deb http://mirror.example/debian bookworm-r2 main"
roles: {controller: controllers, compute: computes}
vip_holder: {label: vip}
pre_gates: ["rabbitmq=500@http://10.0.0.10:15672"]
prepare:
  config_management: [puppet]
  dependencies: {compute: [python3-os-vif]}
projects:
  - name: example
    backends: {example-api: 8764}
    db:
      sync: [example-manage api_db sync, [example-manage, db, sync]]
      online_migrations: example-manage db online_data_migrations
      online_delay: 2s
    upgrade_check: {command: example-status upgrade check, ok_exits: [0, 1]}
    roles:
      controller:
        packages: [example-api]
        services: [example-api.service]
        health: ["http://{address}:8764/", "tcp://{address}:8764"]
      compute: {packages: [example-agent], concurrency: 3, service_wait: 30s}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_good_recipe_reads_into_records(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.repository.content.endswith("main\n")
    assert recipe.vip_holder.label == "vip"
    assert isinstance(recipe.pre_gates[0], RabbitQueuesProbe)
    project = recipe.projects[0]
    assert project.db.sync == (
        ("example-manage", "api_db", "sync"),
        ("example-manage", "db", "sync"),
    )
    assert project.db.online_migrations == ("example-manage", "db", "online_data_migrations")
    assert project.db.online_delay == 2.0
    assert project.upgrade_check is not None and project.upgrade_check.ok_exits == (0, 1)
    controller, compute = project.roles
    assert controller.services == ("example-api",)  # example-api.service is the same service
    assert isinstance(controller.health[0], HttpProbe)
    assert isinstance(controller.health[1], TcpProbe)
    assert (compute.concurrency, compute.service_wait) == (3, 30.0)
    assert recipe.dependencies_of("compute") == ("python3-os-vif",)
    assert recipe.packages == ("python3-os-vif", "example-api", "example-agent")


def test_the_openstack_recipe_ships_and_loads() -> None:
    recipe = load_recipe(builtin_recipe_path("openstack"))
    names = [project.name for project in recipe.projects]
    assert names == [
        "keystone",
        "barbican",
        "heat",
        "designate",
        "swift",
        "horizon",
        "glance",
        "octavia",
        "telemetry",
        "placement",
        "cinder",
        "nova",
        "neutron",
    ]
    nova = recipe.projects[names.index("nova")]
    assert ("nova-manage", "api_db", "sync") in nova.db.sync
    assert nova.db.online_migrations == ("nova-manage", "db", "online_data_migrations")
    neutron = recipe.projects[-1]
    network = neutron.role("network")
    assert network is not None and (network.concurrency, network.service_wait) == (1, 30.0)
    compute = nova.role("compute")
    assert compute is not None and compute.concurrency == 3
    assert recipe.config_management == ("puppet",)


# (a change to the good recipe, the line the error must name, what it must say)
MISTAKES = [
    (
        ("recipe: Example release 2\n", "recipe: Example\nsurprise: 1\n"),
        2,
        "unknown key 'surprise'",
    ),
    (
        ("file: /etc/apt/sources.list.d/example.list", "file: /etc/apt/sources.list"),
        3,
        "repository.file must be a .list or .sources file in /etc/apt/sources.list.d/",
    ),
    (("vip_holder: {label: vip}", "vip_holder: {label: vip, command: x}"), 6, "exactly one of"),
    (("rabbitmq=500@", "rabbitmq=lots@"), 7, "expected rabbitmq=MAX_MESSAGES@URL"),
    (("config_management: [puppet]", "config_management: [pup/pet]"), 9, "not a service name"),
    (("{compute: [python3-os-vif]}", "{storage: [python3-os-vif]}"), 10, "no role 'storage'"),
    (("backends: {example-api: 8764}", "backends: {example-api: http}"), 13, "TCP port"),
    (
        ("      online_delay: 2s\n", "      online_delay: soon\n"),
        17,
        "expected a duration",
    ),
    (("ok_exits: [0, 1]", "ok_exits: [zero]"), 18, "must list exit codes"),
    (("packages: [example-api]", "packages: [Example_API]"), 21, "not a Debian package name"),
    (('health: ["http://', 'health: ["ftp://'), 23, "expected http://"),
    (("concurrency: 3", "concurrency: 0"), 24, "concurrency must be a whole number ≥ 1"),
    (("      compute: {", "      storage: {"), 24, "no role 'storage'"),
    (
        (
            "      sync: [example-manage api_db sync, [example-manage, db, sync]]\n",
            "      sync: x\n      contract: y\n",
        ),
        16,
        "give sync or expand/migrate/contract, not both",
    ),
    (("    backends:", "    name: twice\n    backends:"), 13, "duplicate key 'name'"),
    (("  - name: example\n", "  - name: example\n    vip: 1\n"), 13, "unknown key 'vip'"),
    (("roles: {controller: controllers, ", "roles: {"), 5, "no 'controller' role"),
    (("drain", "drain"), None, None),  # the good recipe, unchanged: no error
]


@pytest.mark.parametrize(("change", "line", "message"), MISTAKES)
def test_mistakes_name_file_and_line(
    tmp_path: Path, change: tuple[str, str], line: int | None, message: str | None
) -> None:
    old, new = change
    text = GOOD.replace(old, new, 1)
    path = write(tmp_path, text)
    if message is None:
        load_recipe(path)
        return
    assert text != GOOD
    with pytest.raises(FileFormatError) as caught:
        load_recipe(path)
    error = caught.value
    assert error.path == str(path)
    assert re.search(re.escape(message), error.message), error.message
    assert error.line == line, f"{error}: expected line {line}"
    assert str(error).startswith(f"{path} line {line}: ")


def test_a_project_with_database_steps_needs_the_controller_role(tmp_path: Path) -> None:
    text = GOOD.replace("      controller:\n", "      compute2:\n").replace(
        "roles: {controller: controllers, compute: computes}",
        "roles: {controller: controllers, compute: computes, compute2: computes}",
    )
    with pytest.raises(FileFormatError, match=r"line 19: .*belong to the controller role"):
        load_recipe(write(tmp_path, text))


def test_a_drain_timeout_of_zero_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("pre_gates:", "drain: {timeout: 0s}\npre_gates:")
    with pytest.raises(FileFormatError, match=r"line 7: drain.timeout must be more than 0"):
        load_recipe(write(tmp_path, text))


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"line 2: not valid YAML"):
        load_recipe(write(tmp_path, "recipe: x\n  - : [\n"))
    with pytest.raises(FileFormatError, match=r"line 1: a recipe must be a YAML mapping"):
        load_recipe(write(tmp_path, "- just a list\n"))
    with pytest.raises(FileFormatError, match=r"the recipe needs 'projects'"):
        load_recipe(write(tmp_path, GOOD.split("projects:")[0]))


def test_visits_per_role(tmp_path: Path) -> None:
    visits = "vip_holder: {label: vip}\nvisits:\n  compute: once\n"
    recipe = load_recipe(write(tmp_path, GOOD.replace("vip_holder: {label: vip}\n", visits)))
    assert recipe.visited_once("compute") and not recipe.visited_once("controller")
    assert not load_recipe(write(tmp_path, GOOD)).visited_once("compute")  # per project
    for value, message in (
        ("  compute: twice\n", "visits.compute must be one of per-project, once, not 'twice'"),
        ("  storage: once\n", "visits: no role 'storage' (roles: compute, controller)"),
        (
            "  controller: once\n",
            "visits.controller: the controller role is visited per project, not once",
        ),
    ):
        path = write(tmp_path, GOOD.replace("vip_holder: {label: vip}\n", visits[:-15] + value))
        with pytest.raises(FileFormatError) as caught:
            load_recipe(path)
        assert caught.value.message == message
        assert str(caught.value).startswith(f"{path} line 8: ")
    path = write(tmp_path, GOOD.replace("vip_holder: {label: vip}\n", "visits: once\n"))
    with pytest.raises(FileFormatError, match=r"line 6: visits must be a mapping"):
        load_recipe(path)


def test_the_openstack_recipe_visits_the_data_plane_once() -> None:
    recipe = load_recipe(builtin_recipe_path("openstack"))
    assert [role.name for role in recipe.roles if recipe.visited_once(role.name)] == [
        "compute",
        "network",
        "storage",
    ]
