"""The host commands, on a tree under a temporary --root: some in-process, some as the real
`interlock` executable. Nothing here restarts a service of this machine (the live restarts run
in namespaces, see test_host_packaging.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from host.gate_env import INTERLOCK, make_gate_env
from interlock.cli.main import main as cli_main
from interlock.host.hooks import HookStore
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.paths import HostPaths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def paths(root: Path) -> HostPaths:
    return HostPaths.under(root)


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INTERLOCK), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def call(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def defer(paths: HostPaths, service: str, timestamp: int = 1700000000, name: str = "ops") -> None:
    Ledger(str(paths.ledger_dir)).record(
        DeferredEvent(service, "restart", "Package update", timestamp, name, "charm")
    )


# -- status ---------------------------------------------------------------------------------


def test_status_exit_codes_and_json(
    root: Path, paths: HostPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call(root, capsys, "status") == (0, "No restarts or hooks deferred\n", "")

    defer(paths, "nova-compute")
    defer(paths, "cron.service", name="other")
    code, out, _ = call(root, capsys, "status")
    assert (code, out) == (1, "Services queued for restart: cron, nova-compute\n")

    broken = paths.ledger_dir / "charm-x-1.deferred"
    broken.write_text("")
    code, out, err = call(root, capsys, "status")
    assert code == 3
    assert out == "Services queued for restart: cron, nova-compute\n"
    assert f"{broken}: empty file" in err

    code, out, _ = call(root, capsys, "status", "--json")
    data = json.loads(out)
    assert code == 3 and data["exit_code"] == 3
    assert data["services"] == ["cron", "nova-compute"]
    assert data["message"] == "Services queued for restart: cron, nova-compute"
    assert data["auto_restarts_blocked"] == []
    assert len(data["problems"]) == 1


def test_status_as_a_subprocess(root: Path, paths: HostPaths) -> None:
    result = run(root, "status")
    assert (result.returncode, result.stdout) == (0, "No restarts or hooks deferred\n")
    defer(paths, "cron")
    assert run(root, "status").returncode == 1


# -- show -------------------------------------------------------------------------------------


def test_show_table_charm_and_json(
    root: Path, paths: HostPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = call(root, capsys, "show")
    assert (code, out) == (0, "Nothing deferred.\n")
    assert call(root, capsys, "show", "--format", "charm")[1] == "hooks: []\nrestarts: []\n"

    defer(paths, "openvswitch-switch", 1619175335, name="neutron-gateway")
    code, out, _ = call(root, capsys, "show")
    assert code == 0
    for text in ("openvswitch-switch", "restart", "charm:neutron-gateway", "Package update"):
        assert text in out

    code, out, _ = call(root, capsys, "show", "--format", "charm")
    assert yaml.safe_load(out) == {
        "hooks": [],
        "restarts": ["1619175335 openvswitch-switch                       Package update"],
    }

    code, out, _ = call(root, capsys, "show", "--json")
    data = json.loads(out)
    assert data == json.loads(call(root, capsys, "show", "--format", "json")[1])
    [event] = data["restarts"]
    assert {k: event[k] for k in ("service", "action", "timestamp", "policy_requestor_name")} == {
        "service": "openvswitch-switch",
        "action": "restart",
        "timestamp": 1619175335,
        "policy_requestor_name": "neutron-gateway",
    }
    assert data["problems"] == []

    (paths.ledger_dir / "torn.deferred").write_text("{action: restart, serv")
    code, _, err = call(root, capsys, "show")
    assert code == 3
    assert "torn.deferred" in err


# -- restart arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("restart",), ("restart", "--deferred-only", "cron")], ids=["neither", "both"]
)
def test_restart_needs_exactly_one_of_deferred_only_and_services(
    root: Path, args: tuple[str, ...]
) -> None:
    result = run(root, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "give either --deferred-only or service names, not both and not neither" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_restart_refuses_invalid_names(root: Path) -> None:
    result = run(root, "restart", "cron;reboot")
    assert result.returncode == 2
    assert "not a valid service name: 'cron;reboot'" in result.stderr


def test_restart_with_nothing_deferred(root: Path) -> None:
    result = run(root, "restart", "--deferred-only")
    assert (result.returncode, result.stdout) == (0, "Nothing to restart.\n")


def test_restart_of_an_unknown_service_fails_and_says_so(root: Path, paths: HostPaths) -> None:
    defer(paths, "interlock-no-such-service")
    result = run(root, "restart", "--deferred-only", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["outcomes"][0]["detail"].startswith("no such service")
    assert len(Ledger(str(paths.ledger_dir)).read().events) == 1  # nothing cleared


def test_check_keeps_what_did_not_restart(root: Path, paths: HostPaths) -> None:
    defer(paths, "interlock-no-such-service")
    result = run(root, "check", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["cleared"] == [] and len(report["pending"]) == 1


# -- clear ----------------------------------------------------------------------------------


def test_clear(root: Path, paths: HostPaths, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(root, capsys, "clear")
    assert code == 2 and "give service names or --all" in err
    for service in ("cron", "nginx", "ssh"):
        defer(paths, service)
    HookStore(paths.state_dir).record("config-changed", ["true"])
    assert call(root, capsys, "clear", "cron.service", "ssh")[:2] == (
        0,
        "cleared 2 deferred restart(s)\n",
    )
    assert [e.service for e in Ledger(str(paths.ledger_dir)).read().events] == ["nginx"]
    assert (
        call(root, capsys, "clear", "--all")[1] == "cleared 1 deferred restart(s) and 1 hook(s)\n"
    )
    assert call(root, capsys, "status")[0] == 0


# -- auto restarts --------------------------------------------------------------------------


def test_auto_restarts_off_and_on(
    root: Path, paths: HostPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = paths.policy_dir / "interlock.policy"
    code, out, _ = call(root, capsys, "auto-restarts", "off")
    assert (code, out) == (
        0,
        "Auto restarts are off for every service: restarts are deferred and recorded.\n",
    )
    assert yaml.safe_load(policy.read_text()) == {
        "blocked_actions": {"*": ["restart", "stop", "try-restart"]},
        "policy_requestor_name": "interlock",
        "policy_requestor_type": "interlock",
    }
    # The gate reads the file interlock wrote.
    gate = make_gate_env(tmp_path / "gate", policy_dir=str(paths.policy_dir))
    assert gate.run("anything", "restart").returncode == 101
    assert gate.run("anything", "start").returncode == 0

    assert call(root, capsys, "auto-restarts", "on")[1] == (
        "Auto restarts are on: package operations may restart services.\n"
    )
    assert not policy.exists()
    assert gate.run("anything", "restart").returncode == 0


def test_auto_restarts_per_service(root: Path, paths: HostPaths) -> None:
    policy = paths.policy_dir / "interlock.policy"
    off = run(
        root,
        "auto-restarts",
        "off",
        "--service",
        "nova-compute",
        "--service",
        "ovs-vswitchd.service",
    )
    assert off.returncode == 0
    assert off.stdout == "Auto restarts are off for: nova-compute, ovs-vswitchd\n"
    assert sorted(yaml.safe_load(policy.read_text())["blocked_actions"]) == [
        "nova-compute",
        "ovs-vswitchd",
    ]
    partly = run(root, "auto-restarts", "on", "--service", "nova-compute", "--json")
    assert json.loads(partly.stdout) == {"auto_restarts": "off", "blocked": ["ovs-vswitchd"]}
    assert json.loads(run(root, "auto-restarts", "status", "--json").stdout)["blocked"] == [
        "ovs-vswitchd"
    ]
    assert run(root, "auto-restarts", "on", "--service", "ovs-vswitchd").returncode == 0
    assert not policy.exists()
    bad = run(root, "auto-restarts", "off", "--service", "../../etc/passwd")
    assert bad.returncode == 2 and "not a valid service name" in bad.stderr
    assert not policy.exists()


# -- hooks ----------------------------------------------------------------------------------


def test_hook_runs_when_auto_restarts_are_on_and_is_recorded_when_off(
    root: Path, paths: HostPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    hook = ["hook", "run", "config-changed", "--", "sh", "-c", f"echo run >> {marker}"]
    assert call(root, capsys, *hook)[0] == 0
    assert marker.read_text() == "run\n"

    call(root, capsys, "auto-restarts", "off")
    code, out, _ = call(root, capsys, *hook)
    assert code == 0 and "hook config-changed deferred" in out
    call(root, capsys, *hook)  # the same hook again: still one entry
    assert marker.read_text() == "run\n"  # not run while auto restarts are off
    hooks, problems = HookStore(paths.state_dir).read()
    assert problems == []
    assert [(h.name, h.command) for h in hooks] == [
        ("config-changed", ("sh", "-c", f"echo run >> {marker}"))
    ]
    assert call(root, capsys, "status")[:2] == (
        1,
        "Hooks skipped due to disabled auto restarts: config-changed\n",
    )
    assert call(root, capsys, "show", "--format", "charm")[1] == (
        "hooks:\n- config-changed\nrestarts: []\n"
    )


def test_hook_run_argument_errors(root: Path) -> None:
    missing = run(root, "hook", "run", "config-changed")
    assert missing.returncode == 2 and "give the hook's command after --" in missing.stderr
    bad = run(root, "hook", "run", "config;changed", "--", "true")
    assert bad.returncode == 1 and "not a valid hook name" in bad.stderr
    failing = run(root, "hook", "run", "config-changed", "--", "false")
    assert failing.returncode == 1 and "exit status 1" in failing.stderr
    assert "Traceback" not in missing.stderr + bad.stderr + failing.stderr


def test_run_deferred_hooks_in_order_stopping_at_the_first_failure(
    root: Path, paths: HostPaths, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    assert run(root, "auto-restarts", "off").returncode == 0
    for name, script in (
        ("first", f"echo first >> {log}"),
        ("second", f"echo second >> {log}; exit 3"),
        ("third", f"echo third >> {log}"),
    ):
        assert run(root, "hook", "run", name, "--", "sh", "-c", script).returncode == 0
    assert not log.exists()

    result = run(root, "run-deferred-hooks", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [h["name"] for h in report["hooks_run"]] == ["first"]
    assert "second" in report["error"] and "exit status 3" in report["error"]
    assert report["restarts"] is None  # restarts are not attempted after a failed hook
    assert log.read_text() == "first\nsecond\n"
    assert [h.name for h in HookStore(paths.state_dir).read()[0]] == ["second", "third"]


def test_run_deferred_hooks_all_succeed(root: Path, paths: HostPaths, tmp_path: Path) -> None:
    log = tmp_path / "log"
    run(root, "auto-restarts", "off")
    for name in ("a-hook", "b-hook"):
        run(root, "hook", "run", name, "--", "sh", "-c", f"echo {name} >> {log}")
    result = run(root, "run-deferred-hooks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "ok   hook a-hook\nok   hook b-hook\n"
    assert log.read_text() == "a-hook\nb-hook\n"
    assert HookStore(paths.state_dir).read()[0] == []


def test_help_teaches(root: Path) -> None:
    for command in ("status", "show", "restart", "auto-restarts", "hook", "gate"):
        result = run(root, command, "--help")
        assert result.returncode == 0
        assert "usage: interlock" in result.stdout
    assert "example" in run(root, "restart", "--help").stdout
