"""Only what a package may restart, and one missing service blocks nothing.

The unit-type rule (interlock.host.services.units) is pure and tested directly. The systemd
backend is driven through `interlock restart` in a private mount namespace where
/usr/bin/systemctl replays `systemctl show` output from tests/fixtures/systemd and logs every
call (systemd cannot run as PID 1 here: see the fixtures' headers); a `restart` moves the unit to
its next recorded state. The sysv backend's missing-service path runs for real in the namespace
sandbox, with cron.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host.gate_env import FIXTURES, INTERLOCK
from host.host_namespace import Namespace
from host.systemctl_replay import install_replay, run_replayed
from interlock.fleet.transport.base import CommandResult
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.services.units import Refusal, RestartGroup, plan_restarts, unit_type
from interlock.rollout.actions import check_restart_report
from interlock.rollout.outcome import StepFailed

SYSTEMD = FIXTURES / "systemd"

# -- the rule itself ----------------------------------------------------------------------------


def test_unit_types() -> None:
    assert unit_type("cron") == "service"
    assert unit_type("cron.service") == "service"
    assert unit_type("getty@tty1.service") == "service"
    assert unit_type("hwclock.sh") == "service"  # a sysv script name with a dot
    assert unit_type("ssh.socket") == "socket"
    for kind in ("target", "mount", "device", "slice", "scope", "timer", "path", "swap"):
        assert unit_type(f"x.{kind}") == kind
    assert unit_type("systemd-fsck@dev-sda1.automount") == "automount"


def test_plan_restarts_joins_sockets_and_refuses_the_rest() -> None:
    plan = plan_restarts(
        [
            "poweroff.target",
            "rescue-ssh.target",
            "ssh.socket",
            "ssh",
            "cron.socket",
            "-rf",
            "run-user-0.mount",
            "dev-sda.device",
            "user.slice",
            "apt-daily.timer",
            "memcached",
            "memcached",
        ]
    )
    assert plan.groups == (
        RestartGroup("cron", service_owed=False, socket="cron.socket"),
        RestartGroup("memcached", service_owed=True, socket=None),
        RestartGroup("ssh", service_owed=True, socket="ssh.socket"),
    )
    assert [refusal.unit for refusal in plan.refused] == [
        "-rf",
        "apt-daily.timer",
        "dev-sda.device",
        "poweroff.target",
        "rescue-ssh.target",
        "run-user-0.mount",
        "user.slice",
    ]
    assert plan.refused[0] == Refusal("-rf", "not a valid service name")
    assert "a target unit" in plan.refused[3].reason
    assert plan.groups[0].units == ("cron.socket",)
    assert plan.groups[2].units == ("ssh", "ssh.socket")


# -- systemd, replayed ------------------------------------------------------------------------

REPLAY = """\
import json, os, sys
config_path = "{config}"
config = json.load(open(config_path))
with open(config["log"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
units = args[args.index("--") + 1 :]
if args[0] in ("restart", "start", "stop"):
    for unit in units:
        states = config["units"].get(unit, [])
        if args[0] == "restart" and len(states) < 2:
            sys.stderr.write(f"Failed to restart {unit}: replay has no next state\\n")
            sys.exit(1)
        if args[0] != "stop" and len(states) > 1:
            states.pop(0)
    with open(config_path + ".tmp", "w") as out:
        json.dump(config, out)
    os.rename(config_path + ".tmp", config_path)
    sys.exit(0)
blocks = []
for unit in units:
    name = config["units"].get(unit, [config["missing"]])[0]
    text = open(name).read()
    blocks.append("".join(l for l in text.splitlines(True) if not l.startswith("#")).strip("\\n"))
sys.stdout.write("\\n\\n".join(blocks) + "\\n")
"""

Replay = Callable[[dict[str, list[str]], list[str]], subprocess.CompletedProcess[str]]


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replay]:
    """Run a command where /usr/bin/systemctl replays fixtures (each unit: its states in order,
    a `restart` or `start` moves to the next, `stop` changes nothing) and /run/systemd/system
    exists. Nothing starts systemd."""
    script, config = install_replay(tmp_path, REPLAY)

    def run(units: dict[str, list[str]], argv: list[str]) -> subprocess.CompletedProcess[str]:
        states = {unit: [str(SYSTEMD / name) for name in names] for unit, names in units.items()}
        config.write_text(
            json.dumps(
                {
                    "log": str(tmp_path / "systemctl.log"),
                    "units": states,
                    "missing": str(SYSTEMD / "not-found.unix.txt"),
                }
            )
        )
        return run_replayed(script, argv)

    yield run


def systemctl_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "systemctl.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def record(root: Path, *services: str) -> Ledger:
    ledger = Ledger(str(root / "var" / "lib" / "policy-rc.d"))
    for service in services:
        ledger.record(
            DeferredEvent(service, "restart", "Package update", 1700000050, "test", "charm")
        )
    return ledger


# What openssh-server's postinst leaves on a systemd host whose auto restarts are off (Debian's
# defaults: ssh.service listens, ssh.socket disabled, rescue-ssh.target static), plus a static
# target no package should ever get restarted, an active target and a service purged since its
# event. Every state was captured from a systemd lab host (tests/systemd/capture.py).
OPENSSH_UNITS = {
    "ssh.service": ["ssh-active.unix.txt", "ssh-restarted.unix.txt"],
    "ssh.socket": ["ssh-socket-inactive.unix.txt"],
    "rescue-ssh.target": ["rescue-ssh-target.unix.txt"],
    "poweroff.target": ["poweroff-target.unix.txt"],
    "multi-user.target": ["multi-user-target.unix.txt"],
    "cron.service": ["cron-active.unix.txt", "cron-restarted.unix.txt"],
}


@pytest.mark.root
def test_systemd_restarts_services_only(replay: Replay, tmp_path: Path) -> None:
    root = tmp_path / "root"
    ledger = record(
        root,
        "ssh",
        "ssh.socket",
        "rescue-ssh.target",
        "poweroff.target",
        "multi-user.target",
        "zzz-real",
        "cron",
    )
    argv = [str(INTERLOCK), "--root", str(root), "restart", "--deferred-only", "--json"]
    result = replay(OPENSSH_UNITS, [*argv, "--settle", "0.2", "--timeout", "5"])
    acted = [call for call in systemctl_calls(tmp_path) if call[0] != "show"]
    assert acted == [["restart", "--", "cron.service"], ["restart", "--", "ssh.service"]]
    assert result.returncode == 1, result.stderr  # the active target and the missing service
    report = json.loads(result.stdout)
    status = {o["service"]: o["status"] for o in report["outcomes"]}
    assert status == {
        # dormant: deb-systemd-invoke would have skipped them too; never started
        "poweroff.target": "settled",
        "rescue-ssh.target": "settled",
        "ssh.socket": "settled",
        "multi-user.target": "not-restartable",
        "cron": "restarted",
        "ssh": "restarted",
        "zzz-real": "missing",
    }
    assert report["not_attempted"] == []
    left = sorted(event.service for event in ledger.read().events)
    assert left == ["multi-user.target", "zzz-real"]
    detail = {o["service"]: o["detail"] for o in report["outcomes"]}
    assert "interlock clear multi-user.target" in detail["multi-user.target"]
    assert "neither active nor enabled" in detail["ssh.socket"]
    assert "--prune-missing" in detail["zzz-real"]

    # The operator's way out: prune what no longer exists, clear what is not restartable.
    pruned = replay(OPENSSH_UNITS, [*argv, "--prune-missing", "--settle", "0.2"])
    assert pruned.returncode == 1, pruned.stderr  # the active target is still owed
    outcomes = {o["service"]: o for o in json.loads(pruned.stdout)["outcomes"]}
    assert outcomes["zzz-real"]["status"] == "pruned"
    assert [e["service"] for e in outcomes["zzz-real"]["cleared"]] == ["zzz-real"]
    clear = replay(
        OPENSSH_UNITS, [str(INTERLOCK), "--root", str(root), "clear", "multi-user.target"]
    )
    assert clear.returncode == 0, clear.stderr
    assert ledger.read().events == []
    assert not any(call[0] != "show" and "target" in call[-1] for call in systemctl_calls(tmp_path))


@pytest.mark.root
def test_systemd_named_target_is_refused(replay: Replay, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    argv = [str(INTERLOCK), "--root", str(root), "restart", "--json"]
    result = replay(OPENSSH_UNITS, [*argv, "multi-user.target"])
    assert result.returncode == 1
    [outcome] = json.loads(result.stdout)["outcomes"]
    assert outcome["status"] == "not-restartable"
    result = replay(OPENSSH_UNITS, [*argv, "poweroff.target"])
    assert result.returncode == 0  # dormant: there is nothing to do, and nothing is done
    [outcome] = json.loads(result.stdout)["outcomes"]
    assert outcome["status"] == "settled"
    assert [call for call in systemctl_calls(tmp_path) if call[0] != "show"] == []


@pytest.mark.root
def test_systemd_listening_socket(replay: Replay, tmp_path: Path) -> None:
    """A listening socket is restarted with the services it triggers: those that run stop with
    it and start again on the new socket (systemd refuses to listen again while one runs)."""
    root = tmp_path / "root"
    ledger = record(root, "ssh.socket")
    activated = {
        "ssh.socket": ["ssh-socket-listening.unix.txt", "ssh-socket-relistening.unix.txt"],
        "ssh.service": ["ssh-inactive.unix.txt"],
    }
    argv = [str(INTERLOCK), "--root", str(root), "restart", "--deferred-only", "--json"]
    result = replay(activated, [*argv, "--settle", "0.2"])
    assert result.returncode == 0, result.stdout + result.stderr
    [outcome] = json.loads(result.stdout)["outcomes"]
    assert (outcome["service"], outcome["status"]) == ("ssh.socket", "restarted")
    assert outcome["detail"] == "restarted (invocation 1b05ac76 → 0422d568)"
    assert [c for c in systemctl_calls(tmp_path) if c[0] != "show"] == [
        ["stop", "--", "ssh.socket", "ssh.service"],
        ["start", "--", "ssh.socket"],
    ]
    assert ledger.read().events == []

    # Both run, and both are owed: one stop and one start restart both.
    (tmp_path / "systemctl.log").unlink()
    record(root, "ssh.socket", "ssh")
    both = {
        "ssh.socket": ["ssh-socket-listening.unix.txt", "ssh-socket-relistening.unix.txt"],
        "ssh.service": ["ssh-active.unix.txt", "ssh-restarted.unix.txt"],
    }
    result = replay(both, [*argv, "--settle", "0.2"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c for c in systemctl_calls(tmp_path) if c[0] != "show"] == [
        ["stop", "--", "ssh.socket", "ssh.service"],
        ["start", "--", "ssh.socket", "ssh.service"],
    ]
    status = {
        o["service"]: (o["status"], o["detail"]) for o in json.loads(result.stdout)["outcomes"]
    }
    assert status["ssh.socket"][0] == "restarted"
    assert status["ssh"] == ("restarted", "restarted with ssh.socket (pid 75 → 112)")
    assert ledger.read().events == []


@pytest.mark.root
def test_check_names_missing_services(replay: Replay, tmp_path: Path) -> None:
    root = tmp_path / "root"
    record(root, "zzz-real", "cron")
    units = {"cron.service": ["cron-restarted.unix.txt"]}
    result = replay(units, [str(INTERLOCK), "--root", str(root), "check", "--json"])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["missing"] == ["zzz-real"]
    assert [e["service"] for e in report["cleared"]] == ["cron"]
    text = replay(units, [str(INTERLOCK), "--root", str(root), "check"])
    assert "zzz-real: no such service on this host" in text.stderr


@pytest.mark.root
def test_check_settles_dormant_sockets_and_targets(replay: Replay, tmp_path: Path) -> None:
    """What a reboot leaves after an openssh-server upgrade: sshd has started since, the
    socket and the rescue target are dormant: nothing is owed, nothing is run."""
    root = tmp_path / "root"
    ledger = record(root, "ssh", "ssh.socket", "rescue-ssh.target")
    units = {**OPENSSH_UNITS, "ssh.service": ["ssh-restarted.unix.txt"]}
    result = replay(units, [str(INTERLOCK), "--root", str(root), "check", "--json"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [e["service"] for e in report["cleared"]] == ["ssh"]
    assert sorted(e["service"] for e in report["settled"]) == ["rescue-ssh.target", "ssh.socket"]
    assert report["pending"] == []
    assert ledger.read().events == []
    assert [call for call in systemctl_calls(tmp_path) if call[0] != "show"] == []
    record(root, "ssh.socket")
    text = replay(units, [str(INTERLOCK), "--root", str(root), "check"])
    assert text.stdout == (
        "cleared: ssh.socket restart (Package update): neither active nor enabled, "
        "a package's restart of it does nothing\n1 cleared, 0 still pending\n"
    )


# -- sysv, live: a purged service does not block cron --------------------------------------------


@pytest.mark.root
def test_sysv_missing_service_does_not_block_the_rest(
    namespace: Callable[..., Namespace], tmp_path: Path
) -> None:
    ns = namespace(runlevel="2")
    root = tmp_path / "root"
    ledger = record(root, "aaa-purged", "cron", "zzz-real")
    ns.run(["/etc/init.d/cron", "start"], check=True)
    before = ns.wait_pid("/run/crond.pid")
    argv = [str(INTERLOCK), "--root", str(root), "restart", "--deferred-only", "--json"]
    result = ns.run([*argv, "--settle", "0.5"], timeout=120)
    after = ns.wait_pid("/run/crond.pid")
    assert after != before, result.stdout
    assert sorted(e.service for e in ledger.read().events) == ["aaa-purged", "zzz-real"]
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    status = {o["service"]: o["status"] for o in report["outcomes"]}
    assert status == {"aaa-purged": "missing", "cron": "restarted", "zzz-real": "missing"}
    # What a rollout makes of this host's report: a failed step naming what is missing.
    with pytest.raises(StepFailed) as failed:
        check_restart_report(
            CommandResult("host1", result.returncode, result.stdout.encode(), b"", 1.0)
        )
    assert "aaa-purged: no such service (sysv): skipped" in str(failed.value)
    assert "zzz-real: no such service (sysv): skipped" in str(failed.value)
    assert "cron" not in str(failed.value)

    text = ns.run(
        [str(INTERLOCK), "--root", str(root), "restart", "--deferred-only", "--prune-missing"],
        timeout=120,
    )
    assert text.returncode == 0, text.stdout + text.stderr
    assert "aaa-purged: no such service (sysv): its 1 event(s) pruned" in text.stdout
    assert "zzz-real: no such service (sysv): its 1 event(s) pruned" in text.stdout
    assert ledger.read().events == []
    assert ns.pid_of("/run/crond.pid") == after  # nothing was owed by cron: not restarted again
