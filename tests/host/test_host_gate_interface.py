"""The policy-rc.d interface through the real generated gate script, run as invoke-rc.d runs it.

Every call goes through `/usr/bin/python3 -IS <script>`: the same executable, interpreter and
flags as an installed gate, reading a gate.conf that points at temporary directories.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from host.gate_env import GateEnv, charm_policy, file_mode, shell_script
from interlock.host.policy import CACHE_SETTLE_NS

NEUTRON = charm_policy(
    "neutron-gateway",
    {
        "cron": ["restart", "stop", "try-restart"],
        "neutron-dhcp-agent": ["restart", "stop", "try-restart"],
    },
)
RESTART_ONLY = charm_policy("restart-only", {"cron": ["restart"]})
BROKEN = (
    "# Managed by juju\nblocked_actions:\n  memcached: [restart, stop]]\npolicy_requestor_name: x\n"
)
EVENT_NAME = re.compile(
    r"^charm-neutron-gateway-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.deferred$"
)


def answered(
    result: subprocess.CompletedProcess[str], code: int
) -> subprocess.CompletedProcess[str]:
    """The exit code, and nothing on stdout (which invoke-rc.d reads as fallback actions)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", f"stdout must stay empty for {code}: {result.stdout!r}"
    return result


@pytest.fixture
def neutron(gate: GateEnv) -> GateEnv:
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    return gate


# -- argv forms ---------------------------------------------------------------------------------


def test_quiet_comes_first_and_silences_stderr(neutron: GateEnv) -> None:
    quiet = answered(neutron.run("--quiet", "cron", "restart"), 101)
    assert quiet.stderr == ""
    loud = answered(neutron.run("cron", "restart"), 101)
    assert "restart of cron deferred by charm:neutron-gateway" in loud.stderr
    answered(neutron.run("--quiet", "cron", "start"), 0)
    answered(neutron.run("--quiet", "memcached", "restart", "2"), 0)
    # --quiet was never taken for the service: the event names cron.
    assert [event.service for event in neutron.events()] == ["cron"]


def test_list_with_and_without_runlevels(neutron: GateEnv) -> None:
    listed = neutron.run("--list", "cron")
    assert listed.returncode == 0
    assert "cron: blocks restart (also force-reload, try-restart, upgrade)" in listed.stdout
    assert "charm:neutron-gateway" in listed.stdout
    assert "runlevels: all" in listed.stdout
    assert "known actions: force-reload force-stop reload restart start status stop" in (
        listed.stdout
    )

    with_levels = neutron.run("--list", "cron", "2", "3", "5")
    assert with_levels.returncode == 0
    assert "runlevels: 2 3 5" in with_levels.stdout

    nothing = neutron.run("--quiet", "--list", "memcached")
    assert nothing.returncode == 0
    assert "memcached: no policy blocks any action" in nothing.stdout
    assert neutron.events() == []


def test_several_actions_in_one_argument(neutron: GateEnv) -> None:
    answered(neutron.run("cron", "stop start"), 101)
    answered(neutron.run("cron", "start status"), 0)
    # stop and restart are both blocked by one requestor: one denial, one event.
    answered(neutron.run("neutron-dhcp-agent", "stop restart", "2"), 101)
    events = {(event.service, event.action) for event in neutron.events()}
    assert events == {("cron", "stop"), ("neutron-dhcp-agent", "stop")}


def test_parenthesised_out_of_runlevel_actions(neutron: GateEnv) -> None:
    answered(neutron.run("cron", "(restart)"), 101)
    answered(neutron.run("cron", "(start)"), 0)
    assert [(e.service, e.action) for e in neutron.events()] == [("cron", "restart")]


def test_unit_names_are_the_same_service(neutron: GateEnv) -> None:
    answered(neutron.run("cron.service", "restart"), 101)
    answered(neutron.run("cron", "restart"), 101)  # the same deferral: no second event
    events = neutron.events()
    assert len(events) == 1
    assert events[0].service == "cron.service"
    assert events[0].unit == "cron"


@pytest.mark.parametrize(
    "argv",
    [
        ("cron", "restart"),  # no runlevel
        ("cron", "restart", "2"),
        ("cron", "restart", "2 3"),  # a runlevel may contain blanks
        ("cron", "restart", "S"),
    ],
)
def test_runlevel_forms(neutron: GateEnv, argv: tuple[str, ...]) -> None:
    answered(neutron.run(*argv), 101)
    answered(neutron.run("memcached", *argv[1:]), 0)
    assert len(neutron.events()) == 1


# -- errors in the call -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (("--frobnicate", "cron", "restart"), 103, "unknown option"),
        ((), 103, "missing initscript ID"),
        (("--quiet",), 103, None),
        (("--list",), 103, "missing initscript ID"),
        (("cron",), 103, "missing actions"),
        (("cron", ""), 103, "empty action list"),
        (("cron", "restart", "2", "extra"), 103, "too many arguments"),
        (("cron", "re;start"), 103, "not an action name"),
        (("../../etc/passwd", "restart"), 100, "not a valid initscript ID"),
        (("cron;reboot", "restart"), 100, "not a valid initscript ID"),
        (("", "restart"), 100, "not a valid initscript ID"),
        (("cron", "frobnicate"), 1, None),
    ],
)
def test_call_errors(neutron: GateEnv, argv: tuple[str, ...], code: int, says: str | None) -> None:
    result = answered(neutron.run(*argv), code)
    if says is not None:
        assert says in result.stderr
    if "--quiet" in argv:
        assert result.stderr == ""
    assert neutron.events() == []


def test_unknown_action_named_by_a_policy_is_known(gate: GateEnv) -> None:
    gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["frobnicate"]}))
    answered(gate.run("cron", "frobnicate"), 101)
    answered(gate.run("memcached", "frobnicate"), 0)


# -- denials and the ledger ---------------------------------------------------------------------


def test_blocked_records_the_charms_event_file(neutron: GateEnv) -> None:
    before = int(time.time())
    answered(neutron.run("cron", "restart", "2"), 101)
    after = int(time.time())
    files = neutron.event_files()
    assert len(files) == 1
    assert EVENT_NAME.match(files[0].name), files[0].name
    assert file_mode(files[0]) == 0o644
    data = yaml.safe_load(files[0].read_text())
    timestamp = data.pop("timestamp")
    assert isinstance(timestamp, int) and before <= timestamp <= after
    assert data == {
        "action": "restart",
        "policy_requestor_name": "neutron-gateway",
        "policy_requestor_type": "charm",
        "reason": "Package update",
        "service": "cron",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ("cron", "restart"),
        ("cron", "force-reload"),
        ("cron", "try-restart"),
        ("cron", "upgrade"),  # nginx's postinst: a new master on the new binary
        ("cron", "(restart)"),
        ("cron.service", "restart"),
        ("cron", "start restart"),
        ("--quiet", "cron", "force-reload", "2"),
    ],
)
def test_restart_cannot_slip_past_under_another_spelling(
    gate: GateEnv, argv: tuple[str, ...]
) -> None:
    gate.write_policy("charm-restart-only.policy", RESTART_ONLY)
    answered(gate.run(*argv), 101)
    assert [(e.unit, e.action) for e in gate.events()] == [("cron", "restart")]


@pytest.mark.parametrize("action", ["status", "start", "(start)", "reload", "stop"])
def test_actions_a_restart_policy_does_not_name_stay_allowed(gate: GateEnv, action: str) -> None:
    gate.write_policy("charm-restart-only.policy", RESTART_ONLY)
    answered(gate.run("cron", action, "2"), 0)
    assert gate.events() == []


def test_status_and_start_refused_only_when_named(gate: GateEnv) -> None:
    gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["status", "start"]}))
    answered(gate.run("--quiet", "cron", "status"), 101)
    answered(gate.run("cron", "(start)"), 101)
    assert sorted(e.action for e in gate.events()) == ["start", "status"]


def test_repeat_denial_adds_nothing_and_refreshes_the_timestamp(neutron: GateEnv) -> None:
    answered(neutron.run("cron", "restart"), 101)
    [path] = neutron.event_files()
    data = yaml.safe_load(path.read_text())
    # Age the pending event, as if the first denial had happened long ago.
    data["timestamp"] -= 1000
    path.write_text(yaml.safe_dump(data, default_flow_style=False))
    aged = data["timestamp"]

    answered(neutron.run("cron", "(restart)", "2"), 101)
    answered(neutron.run("cron.service", "try-restart"), 101)
    assert neutron.event_files() == [path]
    refreshed = yaml.safe_load(path.read_text())
    assert refreshed["timestamp"] >= aged + 1000
    assert {k: v for k, v in refreshed.items() if k != "timestamp"} == {
        k: v for k, v in data.items() if k != "timestamp"
    }


def test_each_blocking_requestor_gets_one_event(gate: GateEnv) -> None:
    gate.write_policy("charm-a.policy", charm_policy("a", {"cron": ["restart", "stop"]}))
    gate.write_policy("charm-b.policy", charm_policy("b", {"cron": ["restart"]}))
    gate.write_policy("ignored.yaml", charm_policy("c", {"cron": ["restart"]}))
    answered(gate.run("cron", "restart stop"), 101)
    assert sorted((e.requestor, e.action) for e in gate.events()) == [
        ("charm:a", "restart"),
        ("charm:b", "restart"),
    ]


# -- fallback actions ---------------------------------------------------------------------------

FALLBACK = """\
# Managed by interlock
blocked_actions:
  nginx: [restart]
fallback_actions:
  nginx:
    restart: [reload]
policy_requestor_name: web
policy_requestor_type: interlock
"""


def test_fallback_actions_answer_106_with_them_on_stdout(gate: GateEnv) -> None:
    gate.write_policy("interlock-web.policy", FALLBACK)
    result = gate.run("nginx", "restart", "2")
    assert result.returncode == 106
    assert result.stdout == "reload\n"
    assert gate.events() == []  # the fallback runs instead: nothing is deferred
    answered(gate.run("nginx", "reload"), 0)


def test_no_fallback_when_the_fallback_is_itself_blocked(gate: GateEnv) -> None:
    gate.write_policy("interlock-web.policy", FALLBACK)
    gate.write_policy("charm-lb.policy", charm_policy("lb", {"nginx": ["reload"]}))
    answered(gate.run("nginx", "restart"), 101)
    # Refused outright, and recorded for the requestor that blocks the restart itself.
    assert [(e.requestor, e.action) for e in gate.events()] == [("interlock:web", "restart")]


# -- malformed policy files ---------------------------------------------------------------------


def _with_broken_file(gate: GateEnv, mode: str) -> None:
    gate.configure(on_policy_error=mode)
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    gate.write_policy("charm-broken.policy", BROKEN)


def test_broken_policy_deny_mode_refuses_and_records(gate: GateEnv) -> None:
    _with_broken_file(gate, "deny")
    result = answered(gate.run("memcached", "restart", "2"), 101)
    assert "charm-broken.policy line 3" in result.stderr
    assert [(e.service, e.requestor) for e in gate.events()] == [("memcached", "charm:broken")]
    # The other file still applies, and start/status stay allowed.
    answered(gate.run("cron", "restart"), 101)
    assert {e.requestor for e in gate.events() if e.service == "cron"} == {
        "charm:broken",
        "charm:neutron-gateway",
    }
    answered(gate.run("memcached", "start"), 0)
    answered(gate.run("--quiet", "memcached", "status"), 0)


def test_broken_policy_allow_mode_ignores_it(gate: GateEnv) -> None:
    _with_broken_file(gate, "allow")
    result = answered(gate.run("memcached", "restart"), 0)
    assert "charm-broken.policy line 3" in result.stderr
    answered(gate.run("cron", "restart"), 101)
    assert [e.requestor for e in gate.events()] == ["charm:neutron-gateway"]


def test_broken_policy_uncertain_mode_answers_105(gate: GateEnv) -> None:
    _with_broken_file(gate, "uncertain")
    result = answered(gate.run("memcached", "restart"), 105)
    assert "charm-broken.policy line 3" in result.stderr
    answered(gate.run("cron", "restart"), 101)
    assert [e.requestor for e in gate.events()] == ["charm:neutron-gateway"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("blocked_actions:\n  cron: restart\n", "must be a list of actions, not a string"),
        ("blocked_actions: [cron]\n", "must map service names to lists of actions"),
        ("blocked_actions:\n  'cron;x': [restart]\n", "is not a valid service name"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("", "empty policy file"),
        ("blocked_actions:\n  cron: [restart]\nsurprise: 1\n", "unknown key 'surprise'"),
        ("base: &b [restart]\nblocked_actions:\n  cron: *b\n", "anchors and aliases are refused"),
        ("blocked_actions:\n  cron: !!seq [restart]\n", "needs a full YAML parser"),
    ],
)
def test_every_policy_problem_is_named(gate: GateEnv, text: str, says: str) -> None:
    gate.write_policy("charm-bad.policy", text)
    result = answered(gate.run("cron", "restart"), 101)
    assert "charm-bad.policy" in result.stderr
    assert says in result.stderr
    assert [e.requestor for e in gate.events()] == ["charm:bad"]


def test_unreadable_policy_bytes(gate: GateEnv) -> None:
    path = gate.policy_dir / "charm-binary.policy"
    path.write_bytes(b"\xff\xfe\x00garbage")
    result = answered(gate.run("cron", "stop"), 101)
    assert f"{path} line 1: not UTF-8 text" in result.stderr


def test_broken_gate_config_still_answers(gate: GateEnv) -> None:
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    gate.configure(on_policy_error="sometimes")
    result = gate.run("memcached", "restart")
    assert result.returncode == 101  # fail safe: a disruptive action is refused, and recorded
    assert result.stdout == ""
    assert "on_policy_error must be one of" in result.stderr
    assert [e.requestor for e in gate.events()] == ["interlock:gate-config"]
    answered(gate.run("memcached", "start"), 0)


# -- chaining to the policy-rc.d that was there before -------------------------------------------


def test_chained_gate_refusal_counts_without_recording(gate: GateEnv, tmp_path: Path) -> None:
    seen = tmp_path / "chained.argv"
    chained = shell_script(
        tmp_path / "docker-policy-rc.d", f'printf "%s|" "$@" > {seen}\necho noise >&2\nexit 101\n'
    )
    gate.configure(chain=str(chained))
    answered(gate.run("--quiet", "memcached", "restart", "2"), 101)
    assert seen.read_text() == "--quiet|memcached|restart|2|"
    assert gate.events() == []
    assert "chained" in gate.log_lines()[-1]


def test_chained_gate_allowing_leaves_our_answer(gate: GateEnv, tmp_path: Path) -> None:
    chained = shell_script(tmp_path / "allow-all", "echo chatter\nexit 0\n")
    gate.configure(chain=str(chained))
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    answered(gate.run("memcached", "restart"), 0)  # the chained stdout is not passed on
    answered(gate.run("cron", "restart"), 101)
    assert len(gate.events()) == 1


def test_chained_gate_fallback_is_passed_on(gate: GateEnv, tmp_path: Path) -> None:
    chained = shell_script(tmp_path / "fallback", "echo 'reload'\necho ignored\nexit 106\n")
    gate.configure(chain=str(chained))
    result = gate.run("nginx", "restart")
    assert (result.returncode, result.stdout) == (106, "reload\n")


# -- the log ------------------------------------------------------------------------------------


def test_one_log_line_per_decision(neutron: GateEnv) -> None:
    calls = [("cron", "restart"), ("cron", "start", "2"), ("--bogus",), ("nginx", "status")]
    for argv in calls:
        neutron.run(*argv)
    lines = neutron.log_lines()
    assert len(lines) == len(calls)
    assert "argv=['cron', 'restart'] answer=101 blocked_by=charm:neutron-gateway" in lines[0]
    assert "recorded " in lines[0]
    assert "answer=0" in lines[1]
    assert "answer=103" in lines[2]
    assert "argv=['nginx', 'status'] answer=0" in lines[3]


def test_log_rotates_at_its_size_bound(gate: GateEnv) -> None:
    gate.configure(log_max_bytes=600)
    rotated = gate.log_file.with_name("gate.log.1")
    calls = 0
    while not rotated.exists():
        answered(gate.run("cron", "start", str(calls)), 0)
        calls += 1
        assert calls < 50, "the log never rotated"
    first_generation = rotated.read_text().splitlines()
    assert len(first_generation) == calls  # nothing lost on the way to the rotation
    assert rotated.stat().st_size > 600
    for _ in range(3):
        answered(gate.run("cron", "start"), 0)
    assert len(gate.log_lines()) == 3
    for _ in range(2 * calls):
        answered(gate.run("cron", "start"), 0)
    # Two generations at most, each bounded by the limit plus one line.
    longest = max(len(line) + 1 for line in first_generation)
    assert gate.log_file.stat().st_size <= 600 + longest
    assert rotated.stat().st_size <= 600 + longest
    assert sorted(p.name for p in gate.log_file.parent.iterdir()) == ["gate.log", "gate.log.1"]


# -- the policy cache ---------------------------------------------------------------------------


def settle() -> None:
    """Let the policy files' change times age past the cache's settling time."""
    time.sleep(CACHE_SETTLE_NS / 1e9 + 0.2)


def test_a_policy_changed_just_now_is_used_but_not_cached(gate: GateEnv) -> None:
    gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["restart"]}))
    answered(gate.run("cron", "restart"), 101)
    assert not gate.cache_file.exists()
    settle()
    answered(gate.run("cron", "restart"), 101)
    assert gate.cache_file.exists()


def test_cache_sees_a_same_size_change(gate: GateEnv) -> None:
    path = gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["restart"]}))
    settle()
    answered(gate.run("cron", "restart"), 101)
    assert gate.cache_file.exists()
    before = os.stat(path)

    changed = charm_policy("x", {"ntpd": ["restart"]})
    assert len(changed) == before.st_size
    with open(path, "r+") as handle:  # in place: same inode, same size
        handle.write(changed)
    # Even with the modification time put back, the change must be seen.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    answered(gate.run("cron", "restart"), 0)
    answered(gate.run("ntpd", "restart"), 101)


def test_cache_sees_new_and_removed_files(gate: GateEnv) -> None:
    answered(gate.run("cron", "restart"), 0)
    path = gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["restart"]}))
    answered(gate.run("cron", "restart"), 101)
    path.unlink()
    answered(gate.run("cron", "stop"), 0)


def test_corrupt_cache_is_ignored(gate: GateEnv) -> None:
    gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["restart"]}))
    answered(gate.run("cron", "restart"), 101)
    gate.cache_file.write_bytes(b"\x00not marshal at all")
    answered(gate.run("cron", "restart"), 101)
    answered(gate.run("cron", "start"), 0)


# -- the environment does not leak in -----------------------------------------------------------


def test_user_environment_does_not_reach_the_gate(gate: GateEnv, tmp_path: Path) -> None:
    """-I: PYTHONPATH, PYTHONHOME and the working directory cannot swap the gate's code."""
    evil = tmp_path / "evil" / "interlock"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit(0)\n")
    gate.write_policy("charm-x.policy", charm_policy("x", {"cron": ["restart"]}))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(evil.parent),
        "PYTHONSTARTUP": str(evil / "__init__.py"),
        "PYTHONINSPECT": "1",
    }
    result = subprocess.run(
        [str(gate.script), "cron", "restart"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=evil.parent,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (101, "")


def test_gate_that_cannot_import_interlock_fails_safe(tmp_path: Path) -> None:
    from interlock.host.gate_install import render_gate_script

    script = tmp_path / "policy-rc.d"
    script.write_text(render_gate_script(str(tmp_path / "nowhere"), str(tmp_path / "gate.conf")))
    script.chmod(0o755)

    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *argv], capture_output=True, text=True, check=False, timeout=60
        )

    assert answered(call("cron", "(restart)"), 101).stderr.startswith(
        "policy-rc.d (interlock): cannot load interlock"
    )
    assert answered(call("--quiet", "cron", "force-reload"), 101).stderr == ""
    answered(call("cron", "start"), 0)


def test_unwritable_ledger_still_refuses(gate: GateEnv, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    gate.configure(ledger_dir=str(blocker / "policy-rc.d"))
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    result = answered(gate.run("cron", "restart"), 101)
    assert "could not record the deferral" in result.stderr


def test_unwritable_log_does_not_change_the_answer(gate: GateEnv, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    gate.configure(log_file=str(blocker / "gate.log"))
    gate.write_policy("charm-neutron-gateway.policy", NEUTRON)
    assert "cannot write the gate log" in answered(gate.run("cron", "start"), 0).stderr
    answered(gate.run("cron", "restart"), 101)
    assert len(gate.events()) == 1
