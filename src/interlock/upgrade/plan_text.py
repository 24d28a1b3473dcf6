"""The upgrade plan as a person reads it: phases and projects, batches, hosts, exact commands.

The shared host scripts are printed once, at the top, under the names the steps use
(`sh -c "$INTERLOCK_HOLD" sh nova-api`), so the text stays readable and exact.
"""

from __future__ import annotations

from collections.abc import Mapping

from interlock.rollout.plan import Action, HostPlan, Plan, RunCommand
from interlock.upgrade.compiler import UpgradePlan, section_of
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
        f"  estimated duration: {duration(upgrade.seconds)} (the recipe's waits and "
        "concurrency, with its per-step estimates)"
    )
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
            took = sum(
                seconds for bid, seconds in upgrade.estimates.items() if section_of(bid) == section
            )
            lines.append("")
            lines.append(f"== {section} ==  (about {duration(took)})")
        lines.append("")
        spacing = f", stagger {batch.stagger:g} s" if batch.stagger else ""
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
