"""Canary, waves, batch sizes and max unavailable per group: the arithmetic of batches."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.fleet.inventory import Host
from interlock.rollout.schedule import (
    Amount,
    BatchSlot,
    GroupLimit,
    GroupLimits,
    Rounding,
    Schedule,
    plan_batches,
    stage_targets,
)


def hosts(count: int, **labels: list[str]) -> list[Host]:
    """count hosts; each label's values are handed out round-robin."""
    result = []
    for index in range(count):
        chosen = {name: values[index % len(values)] for name, values in labels.items()}
        result.append(
            Host(name=f"h{index:03d}", address=f"10.0.{index // 250}.{index % 250}", labels=chosen)
        )
    return result


def sizes(batches: Sequence[BatchSlot]) -> list[int]:
    return [len(batch.hosts) for batch in batches]


def test_amounts_parse_and_round() -> None:
    assert Amount.parse("25%").of(10, Rounding.UP) == 3
    assert Amount.parse("25%").of(10, Rounding.DOWN) == 2
    assert Amount.parse("70%").of(10, Rounding.UP) == 7  # not 8 from float noise
    assert Amount.parse(3).of(1000, Rounding.UP) == 3
    assert str(Amount.parse("12.5%")) == "12.5%"
    for bad in ("-1", "3.5", "150%", "x", True):
        with pytest.raises(ValueError):
            Amount.parse(bad)


def test_canary_then_cumulative_waves() -> None:
    schedule = Schedule(
        canary=Amount(1), waves=(Amount(25, True), Amount(50, True), Amount(100, True))
    )
    batches = plan_batches(hosts(20), schedule)
    assert [b.stage for b in batches] == ["canary", "wave 1", "wave 2", "wave 3"]
    assert sizes(batches) == [1, 4, 5, 10]  # done: 1, 5 (25%), 10 (50%), 20


def test_waves_short_of_all_leave_one_rest_batch_or_batches_of_batch_size() -> None:
    rest = plan_batches(hosts(10), Schedule(waves=(Amount(30, True),)))
    assert [(b.stage, len(b.hosts)) for b in rest] == [("wave 1", 3), ("rest", 7)]
    chunked = plan_batches(hosts(10), Schedule(waves=(Amount(30, True),), batch_size=Amount(3)))
    assert sizes(chunked) == [3, 3, 3, 1]
    assert [b.stage for b in chunked] == ["wave 1", "batch 1", "batch 2", "batch 3"]


def test_counts_as_waves_and_a_wave_that_adds_nothing_is_dropped() -> None:
    assert stage_targets(10, Schedule(canary=Amount(2), waves=(Amount(2), Amount(6)))) == [
        ("canary", 2),
        ("wave 2", 6),
    ]


def test_canary_larger_than_the_fleet_is_the_fleet() -> None:
    assert sizes(plan_batches(hosts(2), Schedule(canary=Amount(5)))) == [2]


def test_max_unavailable_splits_a_stage_into_parts() -> None:
    fleet = hosts(6, role=["controller"])
    schedule = Schedule(waves=(Amount(100, True),), limits=(GroupLimit("role", Amount(2)),))
    batches = plan_batches(fleet, schedule)
    assert [(b.stage, len(b.hosts)) for b in batches] == [
        ("wave 1", 2),
        ("wave 1 (2)", 2),
        ("wave 1 (3)", 2),
    ]


def test_groups_limit_independently_and_value_specific_limits_override() -> None:
    fleet = hosts(3, role=["controller"]) + [
        Host(name=f"c{i}", address=f"10.1.0.{i}", labels={"role": "compute"}) for i in range(6)
    ]
    schedule = Schedule(
        batch_size=Amount(100, True),
        limits=(GroupLimit("role", Amount(1)), GroupLimit("role", Amount(3), value="compute")),
    )
    batches = plan_batches(fleet, schedule)
    for batch in batches:
        roles = [h.labels["role"] for h in batch.hosts]
        assert roles.count("controller") <= 1
        assert roles.count("compute") <= 3
    assert sizes(batches) == [4, 4, 1]


def test_percent_limits_are_of_the_group_and_at_least_one() -> None:
    fleet = hosts(10, az=["az1", "az1", "az1", "az1", "az1", "az1", "az1", "az1", "az2", "az2"])
    limits = GroupLimits(fleet, [GroupLimit("az", Amount(25, True))])
    assert limits.limits == {("az", "az1"): 2, ("az", "az2"): 1}


def test_quorum_label_is_always_one_even_with_a_larger_limit() -> None:
    fleet = hosts(6, galera=["db"])
    schedule = Schedule(
        batch_size=Amount(6),
        limits=(GroupLimit("galera", Amount(3)), GroupLimit("galera", Amount(1), quorum=True)),
    )
    assert sizes(plan_batches(fleet, schedule)) == [1] * 6


def test_hosts_without_the_label_are_unconstrained_by_it() -> None:
    fleet = [*hosts(4, role=["controller"]), Host(name="lonely", address="10.9.9.9")]
    schedule = Schedule(batch_size=Amount(5), limits=(GroupLimit("role", Amount(1)),))
    assert [[h.name for h in b.hosts] for b in plan_batches(fleet, schedule)] == [
        ["h000", "lonely"],
        ["h001"],
        ["h002"],
        ["h003"],
    ]


def test_duplicate_hosts_are_refused() -> None:
    one = hosts(1)
    with pytest.raises(ValueError, match="twice"):
        plan_batches(one + one, Schedule())


amounts = st.one_of(
    st.integers(1, 30).map(lambda n: Amount(n)),
    st.integers(1, 100).map(lambda p: Amount(p, True)),
)
label_values = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4)


@st.composite
def fleets_and_schedules(draw: st.DrawFn) -> tuple[list[Host], Schedule]:
    count = draw(st.integers(1, 60))
    fleet = []
    for index in range(count):
        labels = {}
        if draw(st.booleans()):
            labels["role"] = draw(st.sampled_from(["controller", "compute", "network"]))
        if draw(st.booleans()):
            labels["az"] = draw(st.sampled_from(["az1", "az2", "az3"]))
        if draw(st.integers(0, 4)) == 0:
            labels["galera"] = "db"
        fleet.append(Host(name=f"h{index}", address=f"10.0.0.{index}", labels=labels))
    waves = sorted(draw(st.lists(st.integers(1, 100), max_size=4, unique=True)))
    limits = [
        GroupLimit("role", draw(amounts)),
        GroupLimit("az", draw(amounts)),
        GroupLimit("galera", Amount(1), quorum=True),
    ]
    if draw(st.booleans()):
        limits.append(GroupLimit("role", draw(amounts), value="controller"))
    schedule = Schedule(
        canary=draw(st.none() | amounts),
        waves=tuple(Amount(w, True) for w in waves),
        batch_size=draw(st.none() | amounts),
        limits=tuple(draw(st.permutations(limits))),
    )
    return fleet, schedule


@settings(max_examples=300, deadline=None)
@given(fleets_and_schedules())
def test_properties_of_every_schedule(case: tuple[list[Host], Schedule]) -> None:
    fleet, schedule = case
    batches = plan_batches(fleet, schedule)
    # Every host exactly once, and no batch is empty.
    names = [h.name for b in batches for h in b.hosts]
    assert sorted(names) == sorted(h.name for h in fleet)
    assert len(names) == len(set(names))
    assert all(b.hosts for b in batches)
    # No batch exceeds the limit of any group.
    limits = GroupLimits(fleet, schedule.limits)
    for batch in batches:
        counts: dict[tuple[str, str], int] = {}
        for host in batch.hosts:
            for key in limits.groups_of(host):
                counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            assert count <= limits.limits[key], (batch.stage, key)
    # The canary comes first: its batches lead and hold exactly the canary count.
    stages = stage_targets(len(fleet), schedule)
    if schedule.canary is not None and stages and stages[0][0] == "canary":
        canary = [b for b in batches if b.stage.startswith("canary")]
        assert batches[: len(canary)] == canary
        assert sum(len(b.hosts) for b in canary) == stages[0][1]
    # Each stage ends exactly at its cumulative target.
    done = 0
    reached: dict[str, int] = {}
    for batch in batches:
        done += len(batch.hosts)
        reached[batch.stage.split(" (")[0]] = done
    for stage, target in stages:
        assert reached[stage] == target
