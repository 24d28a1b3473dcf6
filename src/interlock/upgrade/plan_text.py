"""The upgrade plan as a person reads it: phases and projects, batches, hosts, exact commands.

The shared host scripts are printed once, at the top, under the names the steps use
(`sh -c "$INTERLOCK_HOLD" sh nova-api`), so the text stays readable and exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from interlock.rollout.plan import Action, HostPlan, Plan, RunCommand
from interlock.upgrade.compiler import VISIT_LABEL, UpgradePlan, section_of
from interlock.upgrade.steps import SCRIPTS, shown_commands

SOURCES = "INTERLOCK_SOURCES"


def duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    return f"{secs} s"


def render(upgrade: UpgradePlan) -> str:
    recipe = upgrade.recipe
    plan = upgrade.plan
    lines = [f"Upgrade: {recipe.name}"]
    if recipe.path:
        lines.append(f"  recipe: {recipe.path}")
    lines.append(f"  repository: {recipe.repository.file}")
    lines.extend(f"    {line}" for line in recipe.repository.content.splitlines())
    if upgrade.first_controller:
        lines.append(
            f"  first controller: {upgrade.first_controller} ({recipe.vip_holder.describe()})"
        )
    lines.extend(f"  note: {note}" for note in upgrade.notes)
    if plan is None:
        return "\n".join(lines)
    hosts = {hp.host.name for hp in plan.hosts}
    lines.append(
        f"  {len(hosts)} hosts; projects with work: {', '.join(upgrade.projects) or 'none'}"
    )
    lines.append(
        f"  failure budget: {plan.failure_budget} host(s), then {plan.on_failure}; a failed "
        "host is cleaned up (backends enabled, services released) unless the recipe says "
        "otherwise"
    )
    lines.append(
        f"  estimated makespan: {duration(upgrade.seconds)} (batches one after another, each "
        "through its sliding window: concurrency, per-role limits, stagger and waits, with the "
        "recipe's per-step estimates)"
    )
    for role, projects in upgrade.visits.items():
        lines.append(f"  one visit per {role} host for {', '.join(projects)}")
    lines.extend(interruption_lines(upgrade))
    values = {recipe.repository.content: SOURCES}
    legend = [(name, SCRIPTS[name]) for name in scripts_in(plan)]
    legend.append((SOURCES, recipe.repository.content))
    lines.append("")
    lines.append("Named below (scripts run as `sh -c SCRIPT sh ARG...`, one parameter per ARG):")
    for name, text in legend:
        lines.append(f"  {name}='")
        lines.extend(f"    {line}" for line in text.rstrip("\n").splitlines())
        lines.append("  '")
    section = None
    for number, batch in enumerate(plan.batches, start=1):
        current = section_of(batch.id)
        if current != section:
            section = current
            run = []  # this section's batches in a row (a project's finish can come later)
            for later in plan.batches[number - 1 :]:
                if section_of(later.id) != section:
                    break
                run.append(later.id)
            took = sum(upgrade.estimates.get(bid, 0.0) for bid in run)
            lines.append("")
            lines.append(f"== {section} ==  (about {duration(took)})")
        lines.append("")
        spacing = f", stagger {batch.stagger:g} s" if batch.stagger else ""
        roles = [
            f"{limit.value} {limit.amount}"
            for limit in plan.limits
            if limit.label == VISIT_LABEL
            and any(hp.host.labels.get(VISIT_LABEL) == limit.value for hp in batch.hosts)
        ]
        if roles:
            spacing += ": " + ", ".join(roles)
        estimate = upgrade.estimates.get(batch.id)
        about = f" · about {duration(estimate)}" if estimate is not None else ""
        count = len(batch.hosts)
        lines.append(
            f"Batch {number}/{len(plan.batches)} [{batch.id}] · {batch.stage} · {count} "
            f"host{'s' if count != 1 else ''} (at most {batch.concurrency} at once{spacing})"
            + about
        )
        if batch.pre_gates.probes:
            lines.append(
                f"  before it, wait (every {batch.pre_gates.interval:g} s, "
                f"≤ {batch.pre_gates.timeout:g} s) until:"
            )
            lines.extend(f"    - {probe.describe()}" for probe in batch.pre_gates.probes)
        for host_plan in batch.hosts:
            lines.extend(render_host(host_plan, values))
    return "\n".join(lines)


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """cmp2 before cmp10: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


def interruption_lines(upgrade: UpgradePlan) -> list[str]:
    """Per host, how often its services are held and for how long in the estimate; hosts with
    the same figures in a row (natural order) share a line."""
    if upgrade.plan is None:
        return []
    names = sorted({hp.host.name for hp in upgrade.plan.hosts}, key=natural_key)
    rows: list[tuple[list[str], str]] = []
    for name in names:
        times = upgrade.interruptions.get(name, ())
        if not times:
            figure = "not interrupted"
        else:
            figure = f"{len(times)} time{'s' if len(times) != 1 else ''}, {duration(sum(times))}"
            if len(times) > 1:
                figure += f" in all (longest {duration(max(times))})"
        stem = re.sub(r"\d+$", "", name)
        if rows and rows[-1][1] == figure and re.sub(r"\d+$", "", rows[-1][0][-1]) == stem:
            rows[-1][0].append(name)
        else:
            rows.append(([name], figure))
    lines = ["  service interruptions per host (held → released, estimated):"]
    width = max(len(_hosts(group)) for group, _ in rows)
    lines.extend(f"    {_hosts(group):<{width}}  {figure}" for group, figure in rows)
    paused = upgrade.recipe.config_management
    if paused:
        lines.append(
            f"    (config management, {', '.join(paused)}, stays paused from prepare to finalize)"
        )
    return lines


def _hosts(group: Sequence[str]) -> str:
    if len(group) <= 2:
        return ", ".join(group)
    return f"{group[0]} … {group[-1]} ({len(group)} hosts)"


def render_host(host_plan: HostPlan, values: Mapping[str, str]) -> list[str]:
    host = host_plan.host
    lines = [f"  {host.name} ({host.address})"]
    width = max((len(step.id) for step in host_plan.steps), default=0)
    for number, step in enumerate(host_plan.steps, start=1):
        lines.append(f"    {number:>2} {step.id:<{width}}  {step.description}")
        pad = " " * (width + 9)
        lines.extend(f"{pad}{command}" for command in shown_commands(step.action, values))
    cleanup = [
        f"undo {step.id}: {_short(step.undo, values)}"
        for step in reversed(host_plan.steps)
        if step.undo is not None
    ]
    cleanup += [
        f"after {step.id}: {step.left_on_failure}"
        for step in host_plan.steps
        if step.left_on_failure
    ]
    if cleanup:
        lines.append("     on failure: " + "; ".join(cleanup))
    return lines


def _short(action: Action, values: Mapping[str, str]) -> str:
    if isinstance(action, RunCommand):
        return shown_commands(action, values)[0].removeprefix("$ ")
    return action.describe()


def scripts_in(plan: Plan) -> list[str]:
    """The named scripts some step (or its check or undo) runs, in the legend's order."""
    texts = set()
    for host_plan in plan.hosts:
        for step in host_plan.steps:
            for action in (step.action, step.undo):
                if isinstance(action, RunCommand):
                    for argv in (action.argv, action.check or ()):
                        if len(argv) > 2 and argv[:2] == ("sh", "-c"):
                            texts.add(argv[2])
    return [name for name, text in SCRIPTS.items() if text in texts]
