"""`--reboot` in the rollout spec and plan: one reboot instead of restarts, stored and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.errors import FileFormatError, UsageError
from interlock.fleet.inventory import Host
from interlock.rollout.options import apply_options
from interlock.rollout.plan import ApplyDeferred, Plan, RunCommand
from interlock.rollout.planner import build_plan
from interlock.rollout.reboot_steps import ALWAYS, NEEDED, BootRecord, CameBack, Reboot
from interlock.rollout.spec import RolloutSpec, load_spec

HOSTS = [
    Host(name="ctl1", address="10.0.0.11", labels={"role": "controller"}),
    Host(name="ctl2", address="10.0.0.12", labels={"role": "controller"}),
]


def flags(**given: object) -> RolloutSpec:
    """The spec from rollout flags named by their dest: reboot_command="x" is --reboot-command x."""
    return apply_options(
        RolloutSpec(), {"--" + dest.replace("_", "-"): value for dest, value in given.items()}
    )


def test_reboot_where_needed_replaces_the_restarts() -> None:
    spec = flags(
        reboot="needed", reboot_command="lab-reboot", drain=True, gate=["http://{address}:80/"]
    )
    plan = build_plan(spec, HOSTS)
    host = plan.hosts[0]
    assert [s.id for s in host.steps] == [
        "snapshot", "boot", "drain", "reboot", "came-back", "ledger", "health", "enable",
    ]  # fmt: skip
    assert host.work_check == "reboot"
    reboot = host.step("reboot").action
    assert isinstance(reboot, Reboot)
    assert reboot.argv == ("lab-reboot",) and reboot.when == NEEDED
    # A host that needs no reboot gets its deferred restarts instead; no step restarts otherwise.
    assert isinstance(reboot.otherwise, ApplyDeferred)
    assert not any(isinstance(s.action, ApplyDeferred) for s in host.steps)
    assert isinstance(host.step("boot").action, BootRecord)
    assert isinstance(host.step("came-back").action, CameBack)
    check = host.step("ledger").action
    assert isinstance(check, RunCommand) and check.argv == ("interlock", "check", "--json")
    assert check.ok_exits == (0, 1)  # 1: some events stay (their service did not come back)

    text = str(plan)
    assert "if the host needs a reboot: reboot instead of restarting" in text
    assert "$ lab-reboot" in text
    assert "otherwise: $ interlock restart --deferred-only" in text
    # What was shown is what runs: the stored plan is the same.
    assert Plan.from_json(plan.to_json()) == plan


def test_reboot_always_has_no_restart_branch() -> None:
    plan = build_plan(flags(reboot="always"), HOSTS)
    reboot = plan.hosts[1].step("reboot").action
    assert isinstance(reboot, Reboot)
    assert reboot.when == ALWAYS and reboot.otherwise is None
    assert reboot.argv == ("systemctl", "reboot")
    assert "reboot (it pays every deferred restart: none is restarted)" in str(plan)


def test_reboot_refusals() -> None:
    with pytest.raises(UsageError, match="--reboot: a reboot replaces deferred restarts"):
        flags(reboot="needed", restart=("cron",))
    with pytest.raises(UsageError, match="needs the deferred action via interlock"):
        flags(reboot="needed", deferred="ledger")
    with pytest.raises(UsageError, match="go with --reboot"):
        flags(reboot_command="lab-reboot")
    with pytest.raises(UsageError, match="--reboot-timeout"):
        flags(reboot="needed", reboot_timeout="soon")
    # Never this machine: a local transport would reboot it.
    with pytest.raises(UsageError, match="reboots go over SSH"):
        build_plan(flags(reboot="always", transport="local"), HOSTS)


def test_reboot_in_a_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "reboot.yaml"
    path.write_text(
        "action:\n  reboot: needed\n  reboot_command: lab-reboot\n  reboot_timeout: 2m\n"
    )
    spec = load_spec(path)
    assert (spec.action.reboot, spec.action.reboot_argv) == ("needed", ("lab-reboot",))
    assert spec.action.reboot_timeout == 120
    path.write_text("action:\n  restart: [cron]\n  reboot: always\n")
    with pytest.raises(FileFormatError, match=r"reboot.yaml.*line 3.*does not go with"):
        load_spec(path)
    path.write_text("action:\n  reboot_command: lab-reboot\n")
    with pytest.raises(FileFormatError, match=r"goes with action\.reboot"):
        load_spec(path)
    path.write_text("action:\n  reboot: sometimes\n")
    with pytest.raises(FileFormatError, match="needed or always"):
        load_spec(path)
