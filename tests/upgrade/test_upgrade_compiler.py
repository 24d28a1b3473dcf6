"""The compiler on the shipped OpenStack recipe and a realistic cloud (see upgrade_cloud)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from interlock.errors import UsageError
from interlock.facts.packages import PackageFact
from interlock.rollout.plan import (
    Batch,
    Drain,
    Enable,
    Gate,
    Plan,
    Restarted,
    RunCommand,
    Snapshot,
    Soak,
)
from interlock.rollout.schedule import Amount, GroupLimit
from interlock.upgrade import steps
from interlock.upgrade.compiler import (
    VISIT_LABEL,
    UpgradePlan,
    compile_upgrade,
    section_of,
    window_seconds,
)
from interlock.upgrade.facts import packages_for, role_hosts, roles_by_host
from interlock.upgrade.plan_text import render
from interlock.upgrade.recipe import Recipe, builtin_recipe_path, load_recipe
from upgrade.upgrade_cloud import NEW, SEED, cloud, facts_for


@pytest.fixture(scope="module")
def shipped() -> Recipe:
    return load_recipe(builtin_recipe_path("openstack"))


@pytest.fixture(scope="module")
def recipe(shipped: Recipe) -> Recipe:
    """The shipped recipe with every role visited per project, as before `visits`."""
    return dataclasses.replace(shipped, visits=())


def compiled(
    recipe: Recipe,
    changes: dict[str, dict[str, PackageFact]] | None = None,
    shape: dict[str, int] | None = None,
) -> Plan:
    inventory = cloud(shape)
    upgrade = compile_upgrade(
        recipe, role_hosts(recipe, inventory), facts_for(recipe, inventory, changes)
    )
    assert upgrade.plan is not None
    return upgrade.plan


def batches_of(plan: Plan, section: str) -> list[Batch]:
    return [batch for batch in plan.batches if section_of(batch.id) == section]


def test_projects_in_order_placement_before_nova_neutron_last(recipe: Recipe) -> None:
    plan = compiled(recipe)
    sections = list(dict.fromkeys(section_of(batch.id) for batch in plan.batches))
    assert sections == [
        "prepare",
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
        "finalize",
    ]
    assert [b.id for b in batches_of(plan, "prepare")] == ["prepare/check", "prepare/hosts"]
    # Each project: the VIP holder alone, then the other controllers, then the other roles.
    assert [b.id for b in batches_of(plan, "nova")] == [
        "nova/first",
        "nova/controller",
        "nova/compute",
        "nova/finish",
    ]
    assert [b.id for b in batches_of(plan, "neutron")] == [
        "neutron/first",
        "neutron/controller",
        "neutron/network",
        "neutron/compute",
    ]


def test_the_vip_holder_goes_first_and_alone_in_every_project(recipe: Recipe) -> None:
    plan = compiled(recipe)
    firsts = [batch for batch in plan.batches if batch.id.endswith("/first")]
    assert len(firsts) == 13  # every project of the recipe has work on the controllers
    for batch in firsts:
        assert [hp.host.name for hp in batch.hosts] == ["ctl2"]
        assert batch.concurrency == 1
    for batch in plan.batches:
        if batch.id.endswith("/controller"):
            assert [hp.host.name for hp in batch.hosts] == ["ctl1", "ctl3"]


def test_first_controller_steps_drain_hold_install_db_release_gate_enable(recipe: Recipe) -> None:
    plan = compiled(recipe)
    nova = plan.batch("nova/first").hosts[0]
    assert [step.id for step in nova.steps] == [
        "snapshot",
        "drain-nova-api-os-compute",
        "hold",
        "install",
        "db-sync-1",
        "db-sync-2",
        "release",
        "restarted",
        "health",
        "enable-nova-api-os-compute",
    ]
    drain = nova.step("drain-nova-api-os-compute")
    assert drain.action == Drain("10.0.0.12", 8764, 60.0, "fail")
    assert drain.undo == Enable("10.0.0.12", 8764, 60.0)
    assert nova.step("enable-nova-api-os-compute").undoes == "drain-nova-api-os-compute"
    services = [
        "nova-api",
        "nova-api-metadata",
        "nova-conductor",
        "nova-scheduler",
        "nova-novncproxy",
    ]
    assert nova.step("hold").action == steps.hold(services)
    assert nova.step("hold").undo == steps.release(services)
    assert nova.step("release").undoes == "hold"
    assert nova.step("db-sync-1").action == RunCommand(
        ("nova-manage", "api_db", "sync"), timeout=7200.0
    )
    assert nova.step("db-sync-2").action.argv == ("nova-manage", "db", "sync")  # type: ignore[union-attr]
    assert isinstance(nova.step("restarted").action, Restarted)
    gate = nova.step("health").action
    assert isinstance(gate, Gate) and gate.passes == 3
    assert gate.probes[0].describe() == "GET http://10.0.0.12:8764/ → 200"
    install = nova.step("install")
    assert install.sticky
    assert install.action == steps.install([(name, NEW) for name in [*services, "python3-nova"]])


def test_database_steps_run_once_per_project_on_the_first_controller(recipe: Recipe) -> None:
    plan = compiled(recipe)
    db_steps: Counter[tuple[str, str]] = Counter()
    for batch in plan.batches:
        for host_plan in batch.hosts:
            for step in host_plan.steps:
                if step.id.startswith(("db-", "online-migrations")):
                    assert host_plan.host.name == "ctl2"
                    db_steps[(section_of(batch.id), step.id)] += 1
    assert all(count == 1 for count in db_steps.values())
    assert ("keystone", "db-expand") in db_steps and ("keystone", "db-contract") in db_steps
    assert ("placement", "online-migrations") in db_steps
    online = plan.batch("nova/finish").hosts[0].step("online-migrations").action
    assert isinstance(online, RunCommand)
    assert online.argv == ("nova-manage", "db", "online_data_migrations")
    assert (online.ok_exits, online.again_exits) == ((0,), (1,))  # 2 (or else) stops the run
    # Contract runs after every controller has the new code.
    ids = [batch.id for batch in plan.batches]
    assert ids.index("keystone/finish") > ids.index("keystone/controller")


def test_per_role_concurrency_stagger_and_waits(recipe: Recipe) -> None:
    plan = compiled(recipe)
    computes = plan.batch("nova/compute")
    assert (len(computes.hosts), computes.concurrency) == (6, 3)
    network = plan.batch("neutron/network")
    assert (len(network.hosts), network.concurrency) == (2, 1)
    agents = [s.id for s in network.hosts[0].steps if s.id.startswith(("release", "wait"))]
    assert agents == [
        "release-neutron-openvswitch-agent",
        "wait-neutron-openvswitch-agent",
        "release-neutron-l3-agent",
        "wait-neutron-l3-agent",
        "release-neutron-dhcp-agent",
        "wait-neutron-dhcp-agent",
        "release-neutron-metadata-agent",
        "wait-neutron-metadata-agent",
    ]
    wait = network.hosts[0].step("wait-neutron-l3-agent").action
    assert wait == Soak(30.0)
    # Each agent is held on its own, so a failure releases only those still held.
    hold = network.hosts[0].step("hold-neutron-l3-agent")
    assert hold.undo == steps.release(["neutron-l3-agent"])
    assert plan.batch("neutron/compute").stagger == 10.0


def test_only_installed_packages_with_a_newer_candidate_are_installed(recipe: Recipe) -> None:
    plan = compiled(recipe)
    prepared = {hp.host.name: hp for hp in plan.batch("prepare/hosts").hosts}
    preinstall = prepared["cmp1"].step("preinstall").action
    assert isinstance(preinstall, RunCommand)
    specs = preinstall.argv[4:]
    assert "python3-os-vif=" + NEW in specs
    assert not any(spec.startswith("python3-oslo.config=") for spec in specs)  # already current
    assert not any(spec.startswith("python3-oslo.log=") for spec in specs)  # not installed
    assert preinstall.check == steps.script(steps.INSTALLED_SCRIPT, specs)
    # A compute without ceilometer installs no ceilometer, and has no telemetry step at all.
    plan = compiled(
        recipe,
        {
            "cmp2": {
                "ceilometer-agent-compute": PackageFact("ceilometer-agent-compute", None, NEW),
                "python3-ceilometer": PackageFact("python3-ceilometer", None, NEW),
            }
        },
    )
    telemetry = [hp.host.name for hp in plan.batch("telemetry/compute").hosts]
    assert "cmp2" not in telemetry and "cmp1" in telemetry


def test_a_host_at_the_target_version_does_nothing(recipe: Recipe) -> None:
    inventory = cloud()
    current = {name: PackageFact(name, NEW, NEW) for name in packages_for(recipe, ["compute"])}
    plan = compiled(recipe, {"cmp6": current})
    everywhere = {hp.host.name for hp in plan.hosts}
    assert "cmp6" not in everywhere and "cmp5" in everywhere
    # Everything current: no plan at all.
    all_current = {
        name: {p: PackageFact(p, NEW, NEW) for p in packages_for(recipe, roles)}
        for name, (_, roles) in roles_by_host(role_hosts(recipe, inventory)).items()
    }
    upgrade = compile_upgrade(
        recipe, role_hosts(recipe, inventory), facts_for(recipe, inventory, all_current)
    )
    assert upgrade.plan is None
    assert "nothing to do" in render(upgrade)


def test_config_management_left_paused_is_resumed_even_with_nothing_to_upgrade(
    recipe: Recipe,
) -> None:
    inventory = cloud()
    roles = role_hosts(recipe, inventory)
    facts = {}
    for name, fact in facts_for(recipe, inventory).items():
        current = {p: PackageFact(p, NEW, NEW) for p in fact.packages}
        held = frozenset({"puppet"}) if name in ("ctl1", "cmp3") else frozenset()
        facts[name] = dataclasses.replace(fact, packages=current, held=held)
    upgrade = compile_upgrade(recipe, roles, facts)
    assert upgrade.plan is not None
    assert [batch.id for batch in upgrade.plan.batches] == ["finalize"]
    finalize = upgrade.plan.batch("finalize")
    assert [hp.host.name for hp in finalize.hosts] == ["ctl1", "cmp3"]
    assert finalize.hosts[0].step("resume").action == steps.release(["puppet"])


def test_finalize_resumes_config_management_and_runs_upgrade_checks(recipe: Recipe) -> None:
    plan = compiled(recipe)
    finalize = plan.batch("finalize")
    assert len(finalize.hosts) == 13
    ctl2 = next(hp for hp in finalize.hosts if hp.host.name == "ctl2")
    checks = [s for s in ctl2.steps if s.id.startswith("upgrade-check-")]
    assert checks[0].action == RunCommand(("keystone-status", "upgrade", "check"), timeout=600.0)
    nova = ctl2.step("upgrade-check-nova").action
    assert isinstance(nova, RunCommand) and nova.ok_exits == (0, 1)
    pause = plan.batch("prepare/hosts").hosts[0].step("pause")
    assert pause.action == steps.hold(["puppet"]) and pause.undo == steps.release(["puppet"])


def test_vip_holder_rules(recipe: Recipe) -> None:
    inventory = cloud()
    roles = role_hosts(recipe, inventory)
    facts = facts_for(recipe, inventory)
    nobody = {n: dataclasses.replace(f, vip=False) for n, f in facts.items()}
    upgrade = compile_upgrade(recipe, roles, nobody)
    assert upgrade.first_controller == "ctl1"
    assert any("ctl1 goes first (inventory order)" in note for note in upgrade.notes)
    two = {n: dataclasses.replace(f, vip=n in ("ctl1", "ctl3")) for n, f in facts.items()}
    with pytest.raises(UsageError, match=r"more than one controller holds the VIP.*ctl1, ctl3"):
        compile_upgrade(recipe, roles, two)
    with pytest.raises(UsageError, match="no facts for host"):
        compile_upgrade(recipe, roles, {n: f for n, f in facts.items() if n != "net2"})


def test_estimate_comes_from_waits_and_concurrency(recipe: Recipe) -> None:
    inventory = cloud()
    upgrade: UpgradePlan = compile_upgrade(
        recipe, role_hosts(recipe, inventory), facts_for(recipe, inventory)
    )
    # Two network nodes one at a time, four agents each followed by 30 s.
    assert upgrade.estimates["neutron/network"] >= 2 * 4 * 30
    # Six computes three at a time: two rounds of one host's time.
    compute = upgrade.estimates["nova/compute"]
    one = upgrade.estimates["telemetry/compute"] / 2  # the same shape: 6 hosts, 3 at a time
    assert compute > one
    assert upgrade.seconds == pytest.approx(sum(upgrade.estimates.values()))
    assert 30 * 60 < upgrade.seconds < 6 * 3600


def test_plan_text_shows_the_exact_commands(shipped: Recipe) -> None:
    recipe = shipped
    inventory = cloud()
    upgrade = compile_upgrade(recipe, role_hosts(recipe, inventory), facts_for(recipe, inventory))
    text = render(upgrade)
    assert upgrade.plan is not None
    assert text.startswith("Upgrade: OpenStack 2024.1 (Caracal) on Debian 12\n")
    assert "first controller: ctl2" in text
    assert "estimated makespan:" in text
    assert "one visit per compute host for telemetry, nova, neutron" in text
    for host_plan in upgrade.plan.hosts:
        for step in host_plan.steps:
            for line in steps.shown_commands(
                step.action, {recipe.repository.content: "INTERLOCK_SOURCES"}
            ):
                assert line in text
    assert "$ nova-manage db online_data_migrations   (again while it exits 1" in text
    assert 'sh -c "$INTERLOCK_RELEASE" sh neutron-l3-agent' in text
    # The scripts named in the steps are defined once, at the top, exactly.
    assert text.count("INTERLOCK_HOLD='") == 1
    assert steps.HOLD_SCRIPT.splitlines()[3] in text
    # What runs is what is stored: the plan survives the journal's JSON unchanged.
    assert Plan.from_json(upgrade.plan.to_json()) == upgrade.plan


# --- one visit per data-plane host ---------------------------------------------------------------


def test_data_plane_roles_visited_once_after_the_controller_phases_they_need(
    shipped: Recipe,
) -> None:
    plan = compiled(shipped)
    ids = [batch.id for batch in plan.batches]
    assert [i for i in ids if i.endswith(("/compute", "/network", "/storage"))] == ["visit/storage"]
    # Storage after cinder's controllers (its last project), and cinder's online migrations
    # only once the storage nodes run the new code too.
    assert ids[ids.index("cinder/controller") + 1 :][:2] == ["visit/storage", "cinder/finish"]
    # Computes and network nodes after neutron's controllers, in one batch side by side;
    # nova's online migrations after its computes.
    assert ids[-4:] == ["neutron/controller", "visit/network+compute", "nova/finish", "finalize"]
    assert ids.index("nova/controller") < ids.index("neutron/first")
    visit = plan.batch("visit/network+compute")
    roles = [hp.host.labels[VISIT_LABEL] for hp in visit.hosts]
    assert roles == ["network"] * 2 + ["compute"] * 6
    assert (visit.concurrency, visit.stagger) == (1 + 3, 10.0)
    assert set(plan.limits) == {
        GroupLimit(VISIT_LABEL, Amount(1), "network"),
        GroupLimit(VISIT_LABEL, Amount(3), "compute"),
        GroupLimit(VISIT_LABEL, Amount(1), "storage"),
    }


def test_a_compute_visit_holds_once_installs_once_releases_in_reverse_project_order(
    shipped: Recipe,
) -> None:
    plan = compiled(shipped)
    cmp1 = next(hp for hp in plan.batch("visit/network+compute").hosts if hp.host.name == "cmp1")
    assert [step.id for step in cmp1.steps] == [
        "snapshot",
        "hold",
        "install",
        "release-neutron",
        "release-nova",
        "release-telemetry",
        "restarted",
    ]
    # Consumers stop first; the network agent, which nova-compute's ports need, starts first.
    services = ["ceilometer-agent-compute", "nova-compute", "neutron-openvswitch-agent"]
    hold = cmp1.step("hold")
    assert hold.action == steps.hold(services)
    assert hold.undo == steps.release(services[::-1])
    assert cmp1.step("release-neutron").action == steps.release(["neutron-openvswitch-agent"])
    assert cmp1.step("release-telemetry").undoes == "hold"  # the last release
    assert cmp1.step("snapshot").action == Snapshot(tuple(services))
    packages = [
        "ceilometer-agent-compute",
        "python3-ceilometer",
        "nova-compute",
        "nova-compute-kvm",
        "python3-nova",
        "neutron-openvswitch-agent",
        "python3-neutron",
    ]
    assert cmp1.step("install").action == steps.install([(name, NEW) for name in packages])
    assert sum(1 for s in cmp1.steps if s.id.startswith(("hold", "release"))) == 4


def test_a_network_visit_keeps_neutrons_wait_between_agents(shipped: Recipe) -> None:
    plan = compiled(shipped)
    net1 = plan.batch("visit/network+compute").hosts[0]
    assert net1.host.name == "net1"
    agents = ["neutron-openvswitch-agent", "neutron-l3-agent", "neutron-dhcp-agent"]
    agents.append("neutron-metadata-agent")
    assert [step.id for step in net1.steps][:3] == ["snapshot", "hold", "install"]
    assert [step.id for step in net1.steps][3:-1] == [
        f"{kind}-{agent}" for agent in agents for kind in ("release", "wait")
    ]
    assert net1.step("wait-neutron-l3-agent").action == Soak(30.0)
    assert net1.step("release-neutron-metadata-agent").undoes == "hold"
    assert net1.step("hold").undo == steps.release(agents)


def test_the_seed_cloud_interrupts_each_data_plane_host_once_in_at_most_3_hours(
    shipped: Recipe, recipe: Recipe
) -> None:
    inventory = cloud(SEED)
    assert len(inventory.hosts) == 98
    figures = {}
    for name, chosen in (("once", shipped), ("per-project", recipe)):
        upgrade = compile_upgrade(
            chosen, role_hosts(chosen, inventory), facts_for(chosen, inventory)
        )
        counts = {host: len(times) for host, times in upgrade.interruptions.items()}
        figures[name] = (counts, upgrade.seconds)
    once, per_project = figures["once"], figures["per-project"]
    assert len(once[0]) == len(per_project[0]) == 98
    for host, count in once[0].items():
        expected = 13 if host.startswith("ctl") else 1
        assert count == expected, host
    assert [per_project[0][f"cmp{n}"] for n in (1, 83)] == [3, 3]
    assert per_project[0]["net7"] == 1
    # Same concurrency limits: 3 computes, 1 network node, 1 controller at a time.
    assert once[1] <= 3 * 3600 < per_project[1]


def test_the_estimate_follows_the_sliding_window() -> None:
    # Two slots: a, b start at 0; c when a ends (10); d when b ends (20); e when c ends.
    assert window_seconds([(10, None), (20, None), (10, None), (5, None), (1, None)], 2, 0) == 25
    # A stagger delays every start after the first.
    assert window_seconds([(10, None)] * 3, 3, 4) == 18
    # Per-group limits inside one window: the network node one at a time beside computes.
    hosts = [(30.0, "network")] * 2 + [(10.0, "compute")] * 6
    assert window_seconds(hosts, 4, 0, {"network": 1, "compute": 3}) == 60
    assert window_seconds(hosts, 4, 0, {"network": 2, "compute": 3}) == 30
    assert window_seconds([], 3, 10) == 0
