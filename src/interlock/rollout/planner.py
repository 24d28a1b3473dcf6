"""From a rollout spec and the selected hosts to the plan: the batches and each host's steps.

Per host, in order: record the services' state (when the action restarts something), drain its
load-balancer servers, the action, "really restarted", the health probes, the soak, enable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from interlock.errors import UsageError
from interlock.fleet.inventory import Host
from interlock.fleet.status import FleetStatus
from interlock.host.ledger import DeferredEvent
from interlock.rollout.plan import (
    Action,
    ApplyDeferred,
    Batch,
    CommandProbe,
    Debt,
    Drain,
    Enable,
    Gate,
    HostPlan,
    HttpProbe,
    Plan,
    Probe,
    Restarted,
    RestartServices,
    RunCommand,
    Snapshot,
    Soak,
    Step,
    TcpProbe,
)
from interlock.rollout.schedule import Amount, plan_batches
from interlock.rollout.spec import RolloutSpec
from interlock.rollout.window import WindowSchedule

SNAPSHOT = "snapshot"
FIELD_RE = re.compile(r"\{(name|address|labels\[([A-Za-z0-9_.-]+)\])\}")


def build_plan(
    spec: RolloutSpec,
    hosts: Sequence[Host],
    inventory_hosts: Mapping[str, Host] | None = None,
    status: FleetStatus | None = None,
) -> Plan:
    """The plan for `hosts` (already selected, in inventory order); with the fleet `status`, a
    plan of deferred restarts shows what each host owes."""
    if not hosts:
        raise UsageError("the rollout targets no hosts")
    known = dict(inventory_hosts or {})
    for probe in spec.pre_gates.probes:
        if isinstance(probe, CommandProbe) and probe.on is not None and probe.on not in known:
            raise UsageError(f"pre-gate command on {probe.on!r}: no such host in the inventory")
    schedule = spec.schedule
    if not schedule.waves and schedule.batch_size is None:
        # One host at a time unless the operator asked for more: the safe default for restarts.
        schedule = dataclasses.replace(schedule, batch_size=Amount(1))
    slots = plan_batches(hosts, schedule)
    batches = tuple(
        Batch(
            id=f"b{number}",
            stage=slot.stage,
            hosts=tuple(with_debt(host_plan(spec, host), status) for host in slot.hosts),
            concurrency=min(spec.concurrency or len(slot.hosts), len(slot.hosts)),
            stagger=spec.stagger,
            jitter=spec.jitter,
            pre_gates=spec.pre_gates,
        )
        for number, slot in enumerate(slots, start=1)
    )
    gate_hosts = tuple(
        known[probe.on]
        for probe in spec.pre_gates.probes
        if isinstance(probe, CommandProbe) and probe.on is not None
    )
    return Plan(
        title=f"Rollout: {spec.action.describe()}",
        batches=batches,
        limits=schedule.limits,
        failure_budget=spec.failure_budget,
        on_failure=spec.on_failure,
        windows=WindowSchedule(spec.windows),
        schedule=schedule.describe(),
        gate_hosts=gate_hosts,
    )


def host_plan(spec: RolloutSpec, host: Host) -> HostPlan:
    if spec.action.reboot is not None:
        from interlock.rollout.reboot import reboot_host_plan

        return reboot_host_plan(spec, host)
    steps: list[Step] = []
    action = spec.action
    work: Action
    work_check: str | None = None
    restarts = action.kind in ("restart", "deferred")
    if action.kind == "deferred":
        work = ApplyDeferred(action.via, spec.interlock, spec.ledger_dir, action.timeout)
        work_check = "deferred"
    elif action.kind == "restart":
        work = RestartServices(action.services, action.via, spec.interlock, action.timeout)
    else:
        check = None if action.check is None else tuple(fill(a, host) for a in action.check)
        argv = tuple(fill(arg, host) for arg in action.argv)
        work = RunCommand(argv, check, timeout=action.timeout)
        work_check = "command" if action.check else None
    post = spec.post_gates
    if restarts and post.restarted:
        services = action.services if action.kind == "restart" else ()
        snapshot = Snapshot(services, action.kind == "deferred", spec.ledger_dir)
        steps.append(Step(SNAPSHOT, snapshot, sticky=True))
    drain = spec.drain
    if drain.enabled:
        enable = Enable(host.address, drain.port, drain.timeout)
        keep = drain.on_failure == "leave-drained"
        steps.append(
            Step(
                "drain",
                Drain(host.address, drain.port, drain.timeout, drain.on_timeout),
                undo=None if keep else enable,
                left_on_failure="its servers stay drained (drain.on_failure: leave-drained)"
                if keep
                else None,
            )
        )
    steps.append(Step(work.kind, work, sticky=True))
    if restarts and post.restarted:
        steps.append(Step("restarted", Restarted(SNAPSHOT, post.deadline)))
    steps.extend(closing_steps(spec, host))
    return HostPlan(host, tuple(steps), work_check)


def closing_steps(spec: RolloutSpec, host: Host) -> list[Step]:
    """What every host's plan ends with, whatever its action: health gates, soak, enable."""
    post, drain = spec.post_gates, spec.drain
    steps: list[Step] = []
    probes = tuple(fill_probe(probe, host) for probe in post.probes)
    if probes:
        steps.append(Step("health", Gate(probes, post.passes, post.interval, post.deadline)))
    if post.soak > 0:
        steps.append(Step("soak", Soak(post.soak, probes)))
    if drain.enabled:
        steps.append(
            Step("enable", Enable(host.address, drain.port, drain.timeout), undoes="drain")
        )
    return steps


def with_debt(plan: HostPlan, status: FleetStatus | None) -> HostPlan:
    """The host's pending deferred restarts from the fleet status, grouped per service."""
    if status is None or plan.work_check != "deferred":
        return plan
    for host, reason in status.unreachable:
        if host.name == plan.host.name:
            return dataclasses.replace(plan, debt_unread=f"unreachable: {plain(reason)}")
    found = next((d for d in status.hosts if d.host.name == plan.host.name), None)
    if found is None:
        return plan
    owed: dict[str, list[DeferredEvent]] = {}
    for event in found.pending:
        owed.setdefault(event.unit, []).append(event)
    debt = tuple(
        Debt(
            service,
            min(event.timestamp for event in events),
            tuple(dict.fromkeys(plain(event.reason) or event.action for event in events)),
        )
        for service, events in sorted(owed.items())
    )
    return dataclasses.replace(plan, debt=debt)


def plain(text: str) -> str:
    """A value read from a host, as text a terminal shows as it is: no control characters."""
    return "".join(char if char.isprintable() else " " for char in text)[:300]


def fill(template: str, host: Host) -> str:
    """{name}, {address} and {labels[KEY]} filled in for one host; other braces (a shell's
    ${VAR}, awk's {print}) are left alone."""

    def value(match: re.Match[str]) -> str:
        if match[1] == "name":
            return host.name
        if match[1] == "address":
            return host.address
        label = match[2]
        if label not in host.labels:
            raise UsageError(f"host {host.name} has no label {label!r} (used in {template!r})")
        return host.labels[label]

    return FIELD_RE.sub(value, template)


def fill_probe(probe: Probe, host: Host) -> Probe:
    if isinstance(probe, HttpProbe):
        return dataclasses.replace(probe, url=fill(probe.url, host))
    if isinstance(probe, TcpProbe):
        return dataclasses.replace(probe, address=fill(probe.address, host))
    if isinstance(probe, CommandProbe):
        return dataclasses.replace(probe, argv=tuple(fill(arg, host) for arg in probe.argv))
    return probe
