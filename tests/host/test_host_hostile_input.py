"""Hostile and broken input to the gate and the ledger: they run as root on every package operation.

The gate runs as an installed gate does (`/usr/bin/python3 -IS` on the generated script), from the
source tree and from the zipapp that `fleet install` copies to hosts (which bundles PyYAML, so the
gate there can fall back to a full YAML parser). Remote ledgers are read by running the real probe
scripts of `fleet status` and the rollout over a temporary directory, then parsing their output.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from host.gate_env import GateEnv, charm_policy, make_gate_env
from interlock.facts import ledger as ledger_fact
from interlock.fleet.install import build_zipapp
from interlock.fleet.inventory import Host
from interlock.fleet.transport.local import LocalTransport
from interlock.host.gate import GateConfig
from interlock.host.gate_install import GateInstaller
from interlock.host.hooks import HookStore
from interlock.host.ledger import Ledger, LedgerView
from interlock.host.policy import CACHE_SETTLE_NS, load_policies

EVENT = (
    "action: restart\npolicy_requestor_name: ops\npolicy_requestor_type: charm\n"
    "reason: Package update\nservice: cron\ntimestamp: 1700000000\n"
)
CRON_POLICY = charm_policy("ops", {"cron": ["restart", "stop"]})
ALIASED_POLICY = (
    "# Managed by juju\n"
    "blocked_actions:\n"
    "  cron: &acts [restart, stop]\n"
    "  ssh: *acts\n"
    "policy_requestor_name: aliased\n"
    "policy_requestor_type: charm\n"
)
NOBODY = 65534


def laughs(levels: int, width: int = 6) -> list[str]:
    """YAML lines defining anchors l0..l<levels>, each a list of `width` aliases of the previous."""
    lines = [f"  l0: &l0 [{', '.join(['restart'] * width)}]"]
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return lines


def laughing_event(levels: int) -> str:
    """An event whose reason is a billion-laughs structure (`width ** levels` strings)."""
    return (
        "laughs:\n" + "\n".join(laughs(levels)) + "\n"
        f"action: restart\nreason: *l{levels}\nservice: cron\ntimestamp: 1700000000\n"
    )


def answered(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr


def requestors(gate: GateEnv) -> list[tuple[str, str]]:
    return sorted((event.service, event.requestor) for event in gate.events())


def settle() -> None:
    import time

    time.sleep(CACHE_SETTLE_NS / 1e9 + 0.2)


def read_ledger(directory: Path) -> LedgerView:
    return Ledger(str(directory)).read()


def probe_ledger(ledger: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """`fleet status`'s read (the ledger fact) run for real over `ledger`: (services, problems)."""
    marker = "@@interlock-test@@"
    output = subprocess.run(
        ledger_fact.command(marker, str(ledger), str(tmp_path / "no-hooks")),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    fact = ledger_fact.parse(output.decode("utf-8", "surrogateescape"), marker, "h1")
    return [event.service for event in fact.events], list(fact.problems)


def list_ledger(ledger: Path) -> tuple[list[str], list[str]]:
    """The rollout's read of the ledger, through its actions on this machine: (services,
    problems)."""
    from interlock.rollout.actions import HostActions
    from interlock.rollout.balancer import NoBalancer
    from interlock.rollout.probes import ProbeRunner

    transport = LocalTransport()
    actions = HostActions(transport, NoBalancer(), ProbeRunner(transport))
    fact = asyncio.run(actions.ledger(Host("h1", "127.0.0.1"), str(ledger)))
    return [event.service for event in fact.events], list(fact.problems)


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive `fleet install` copies to hosts (it bundles pure-Python PyYAML)."""
    path = tmp_path_factory.mktemp("zipapp") / "interlock"
    build_zipapp(path)
    return path


@pytest.fixture
def zipapp_gate(zipapp: Path, tmp_path: Path) -> GateEnv:
    return make_gate_env(tmp_path / "zgate", package_dir=str(zipapp))


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    directory = tmp_path / "policy-rc.d"
    directory.mkdir(mode=0o755)
    return directory


# -- YAML anchors and aliases are refused everywhere ---------------------------------------------


def test_zipapp_gate_has_pyyaml_and_refuses_aliases(zipapp_gate: GateEnv) -> None:
    zipapp_gate.configure(on_policy_error="allow")
    zipapp_gate.write_policy("charm-aliased.policy", ALIASED_POLICY)
    stderr = answered(zipapp_gate.run("ssh", "restart"), 0)
    assert "charm-aliased.policy line 3: YAML anchors and aliases are refused" in stderr
    # The same file without the alias is read by the same gate: the refusal is about aliases.
    zipapp_gate.write_policy(
        "charm-aliased.policy", ALIASED_POLICY.replace("&acts ", "").replace("*acts", "[start]")
    )
    answered(zipapp_gate.run("cron", "restart"), 101)
    assert requestors(zipapp_gate) == [("cron", "charm:aliased")]


def test_zipapp_gate_refuses_billion_laughs_and_records(zipapp_gate: GateEnv) -> None:
    text = "blocked_actions:\n" + "\n".join(laughs(9)) + "\npolicy_requestor_name: x\n"
    zipapp_gate.write_policy("charm-laughs.policy", text)
    stderr = answered(zipapp_gate.run("cron", "restart"), 101)
    assert "charm-laughs.policy line 2: YAML anchors and aliases are refused" in stderr
    assert len(stderr) < 600
    assert requestors(zipapp_gate) == [("cron", "charm:laughs")]


def test_exotic_yaml_still_falls_back_to_pyyaml_in_the_zipapp(zipapp_gate: GateEnv) -> None:
    """A tag is valid YAML the small reader leaves to PyYAML; the fallback still works."""
    zipapp_gate.write_policy(
        "charm-tagged.policy",
        "blocked_actions:\n  cron: !!seq [restart]\npolicy_requestor_name: tagged\n",
    )
    answered(zipapp_gate.run("cron", "restart"), 101)
    assert requestors(zipapp_gate) == [("cron", "charm:tagged")]


def test_exotic_yaml_is_left_to_pyyaml_only_in_small_files(zipapp_gate: GateEnv) -> None:
    """Pure-Python PyYAML takes seconds per MiB: a large file must be in the fast subset."""
    services = "".join(f"  svc-{n}: [restart, stop, try-restart]\n" for n in range(2500))
    zipapp_gate.write_policy(
        "charm-big.policy",
        f"blocked_actions:\n{services}  cron: !!seq [restart]\npolicy_requestor_name: big\n",
    )
    zipapp_gate.configure(on_policy_error="allow")
    stderr = answered(zipapp_gate.run("cron", "restart"), 0)
    assert "charm-big.policy line 2502: '!' (tags, block scalars and complex keys)" in stderr
    assert "a full YAML parser reads it only in files up to 64 KiB" in stderr


def test_ledger_refuses_an_aliased_event(ledger: Path, tmp_path: Path) -> None:
    (ledger / "charm-laughs.deferred").write_text(laughing_event(6))
    (ledger / "charm-ops.deferred").write_text(EVENT)
    view = read_ledger(ledger)
    assert [event.service for event in view.events] == ["cron"]
    assert [str(p) for p in view.problems] == [
        f"{ledger}/charm-laughs.deferred line 2: YAML anchors and aliases are refused "
        "(these files never need them)"
    ]
    # The operator's readers of remote ledgers use the same parser.
    services, problems = probe_ledger(ledger, tmp_path)
    assert services == ["cron"]
    assert len(problems) == 1 and "anchors and aliases are refused" in problems[0]
    services, problems = list_ledger(ledger)
    assert services == ["cron"]
    assert len(problems) == 1 and "anchors and aliases are refused" in problems[0]
    assert all(len(problem) < 300 for problem in problems)


# -- sizes: a policy over 1 MiB or an event over 64 KiB is broken, and never read whole ----------


def test_oversized_policy_is_broken_with_the_configured_fail_mode(gate: GateEnv) -> None:
    padding = "# " + "x" * 1000 + "\n"
    big = CRON_POLICY + padding * 1100
    assert len(big) > 1 << 20
    gate.configure(on_policy_error="allow")
    gate.write_policy("charm-ops.policy", big)
    stderr = answered(gate.run("cron", "restart"), 0)
    assert "charm-ops.policy: larger than 1 MiB" in stderr
    gate.configure(on_policy_error="deny")
    answered(gate.run("cron", "restart"), 101)
    assert requestors(gate) == [("cron", "charm:ops")]
    # At the limit it is a policy like any other.
    gate.write_policy("charm-ops.policy", CRON_POLICY + padding * 1000)
    answered(gate.run("cron", "stop"), 101)


def test_oversized_event_is_reported_and_not_read(ledger: Path, tmp_path: Path) -> None:
    (ledger / "charm-big.deferred").write_text(EVENT + "# " + "x" * (64 << 10) + "\n")
    with open(ledger / "charm-sparse.deferred", "wb") as handle:
        handle.truncate(8 << 20)  # a hole: costs no disk, but reading it whole costs 8 MiB
    (ledger / "charm-ops.deferred").write_text(EVENT)
    view = read_ledger(ledger)
    assert [event.service for event in view.events] == ["cron"]
    assert sorted(str(p) for p in view.problems) == [
        f"{ledger}/charm-big.deferred: larger than 64 KiB; not read",
        f"{ledger}/charm-sparse.deferred: larger than 64 KiB; not read",
    ]
    services, problems = probe_ledger(ledger, tmp_path)
    assert services == ["cron"]
    assert len(problems) == 2 and all("larger than 64 KiB" in p for p in problems)
    services, problems = list_ledger(ledger)
    assert services == ["cron"]
    assert len(problems) == 2 and all("larger than 64 KiB" in p for p in problems)


def test_a_fifo_never_hangs_the_gate_or_the_ledger(gate: GateEnv) -> None:
    os.mkfifo(gate.policy_dir / "charm-fifo.policy", 0o600)
    gate.configure(on_policy_error="allow")
    stderr = answered(gate.run("cron", "restart"), 0)
    assert "charm-fifo.policy: not a regular file" in stderr
    os.mkfifo(gate.ledger_dir / "charm-fifo.deferred", 0o644)
    view = read_ledger(gate.ledger_dir)
    assert [str(p) for p in view.problems] == [
        f"{gate.ledger_dir}/charm-fifo.deferred: not a regular file; not read"
    ]


# -- strings where the format has strings; messages that quote a file stay short -----------------


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("reason: [a, b]", "reason must be a string"),
        ("reason: {a: b}", "reason must be a string"),
        ("policy_requestor_name: [x]", "policy_requestor_name must be a string"),
        ("policy_requestor_type: {a: 1}", "policy_requestor_type must be a string"),
    ],
)
def test_event_fields_must_be_strings(ledger: Path, line: str, says: str) -> None:
    key = line.split(":", 1)[0]
    text = "".join(
        f"{line}\n" if existing.startswith(key + ":") else existing + "\n"
        for existing in EVENT.splitlines()
    )
    (ledger / "charm-odd.deferred").write_text(text)
    view = read_ledger(ledger)
    assert view.events == []
    assert len(view.problems) == 1 and says in str(view.problems[0])


def test_policy_fallback_keys_must_be_action_names(gate: GateEnv) -> None:
    gate.write_policy(
        "charm-odd.policy",
        CRON_POLICY + "fallback_actions:\n  cron:\n    1: [start]\n",
    )
    policies, problems = load_policies(str(gate.policy_dir))
    assert policies == []
    assert len(problems) == 1 and "is not an action name" in str(problems[0])


def test_messages_quoting_a_file_are_bounded_and_escaped(gate: GateEnv, ledger: Path) -> None:
    long_name = "svc-" + "x" * 5000 + "\x1b[31m"
    in_yaml = '"' + long_name.replace("\x1b", "\\e") + '"'  # a double-quoted YAML escape
    gate.write_policy("charm-long.policy", f"blocked_actions:\n  {in_yaml}: [x]\n")
    stderr = answered(gate.run("cron", "start"), 0)
    assert "charm-long.policy: blocked_actions: 'svc-xxx" in stderr
    assert "\x1b" not in stderr and len(stderr) < 400
    (ledger / "charm-long.deferred").write_text(
        EVENT.replace("service: cron", f"service: {in_yaml}")
    )
    (problem,) = read_ledger(ledger).problems
    assert "\x1b" not in str(problem) and len(str(problem)) < 300
    assert "\\x1b" in str(problem) or "…" in str(problem)


# -- nothing refused is ever unrecorded ---------------------------------------------------------


def test_broken_gate_conf_still_records_the_refusal(gate: GateEnv) -> None:
    gate.configure(on_policy_error="sometimes", surprise="1")
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    stderr = answered(gate.run("cron", "restart"), 101)
    assert f"{gate.config_path} line 6: on_policy_error must be one of" in stderr
    assert f"{gate.config_path} line 7: unknown key 'surprise'" in stderr
    # The policy's refusal, and the one of the stand-in for the broken lines.
    assert requestors(gate) == [("cron", "charm:ops"), ("cron", "interlock:gate-config")]
    # The good lines still count: the log went where the file says.
    assert "answer=101" in gate.log_lines()[-1]


def test_a_crash_after_the_decision_records_the_refusal(gate: GateEnv) -> None:
    """The chained gate cannot run: the fail-safe answer 101 still leaves an event."""
    gate.configure(chain=str(gate.root / "gone" / "policy-rc.d"))
    stderr = answered(gate.run("cron", "force-reload"), 101)
    assert "internal error FileNotFoundError" in stderr
    assert len(gate.event_files()) == 1
    (event,) = gate.events()
    assert (event.service, event.action, event.requestor) == (
        "cron",
        "restart",
        "interlock:gate-error",
    )
    assert "answer=101 internal error" in gate.log_lines()[-1]
    answered(gate.run("cron", "start"), 0)  # nothing disruptive: the fail-safe answer allows
    assert len(gate.event_files()) == 1


def test_deeply_nested_policy_is_broken_not_a_crash(gate: GateEnv) -> None:
    gate.write_policy("charm-deep.policy", "blocked_actions: {cron: " + "[" * 5000 + "\n")
    stderr = answered(gate.run("cron", "restart"), 101)
    assert "charm-deep.policy" in stderr and "nested too deeply" in stderr
    assert requestors(gate) == [("cron", "charm:deep")]


def test_a_failed_record_is_said_on_stderr_and_in_the_log_even_quiet(
    gate: GateEnv, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    gate.configure(ledger_dir=str(blocker / "policy-rc.d"))
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    stderr = answered(gate.run("--quiet", "cron", "restart"), 101)
    assert "could not record the deferral" in stderr
    assert "could not record the deferral" in gate.log_lines()[-1]


def test_undecodable_environment_does_not_turn_into_a_refusal(gate: GateEnv) -> None:
    result = subprocess.run(
        [str(gate.script), "cron", "restart"],
        env={b"PATH": b"/usr/bin:/bin", b"DPKG_MAINTSCRIPT_PACKAGE": b"cr\xffon"},
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert "package=cr\\xffon" in gate.log_lines()[-1]


# -- the policy cache ---------------------------------------------------------------------------


def test_gate_creates_its_cache_directory_and_uses_the_cache(gate: GateEnv) -> None:
    gate.cache_file.parent.rmdir()  # as on a host where nothing created /var/lib/interlock
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    settle()
    answered(gate.run("cron", "restart"), 101)
    assert "policies=read" in gate.log_lines()[-1]
    assert stat.S_IMODE(gate.cache_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(gate.cache_file.parent.stat().st_mode) == 0o755
    answered(gate.run("cron", "stop"), 101)
    assert "policies=cached" in gate.log_lines()[-1]


def test_a_cache_not_written_by_root_is_not_used(gate: GateEnv) -> None:
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    settle()
    answered(gate.run("cron", "restart"), 101)
    os.chmod(gate.cache_file, 0o666)
    answered(gate.run("cron", "restart"), 101)
    assert "policies=read" in gate.log_lines()[-1]


@pytest.mark.root
def test_gate_install_creates_the_state_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "root"
    GateInstaller(root).install()
    state = root / "var" / "lib" / "interlock"
    st = state.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)
    GateInstaller(root).uninstall()


# -- symlinks and ownership ---------------------------------------------------------------------


def test_gate_log_symlink_is_not_followed(gate: GateEnv, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    gate.log_file.parent.mkdir(parents=True, exist_ok=True)
    gate.log_file.symlink_to(victim)
    stderr = answered(gate.run("cron", "start"), 0)
    assert victim.read_text() == "precious\n"
    assert "cannot write the gate log" in stderr


def test_ledger_lock_symlink_is_not_followed(gate: GateEnv, tmp_path: Path) -> None:
    target = tmp_path / "created-through-a-link"
    (gate.ledger_dir / ".interlock.lock").symlink_to(target)
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    stderr = answered(gate.run("cron", "restart"), 101)
    assert not target.exists()
    assert "could not record the deferral" in stderr


def test_event_symlink_to_a_secret_never_shows_the_secret(gate: GateEnv, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("service: hunter2-s3cret!\naction: x\nreason: y\ntimestamp: z\n")
    secret.chmod(0o600)
    (gate.ledger_dir / "charm-x.deferred").symlink_to(secret)
    view = read_ledger(gate.ledger_dir)
    assert [str(p) for p in view.problems] == [
        f"{gate.ledger_dir}/charm-x.deferred: a symbolic link; not read"
    ]
    services, problems = probe_ledger(gate.ledger_dir, tmp_path)
    assert (services, problems) == ([], [])
    services, problems = list_ledger(gate.ledger_dir)
    assert (services, problems) == ([], [])
    # The gate reads the ledger when it records: nothing of the secret reaches its output.
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    result = gate.run("cron", "restart")
    assert "hunter2" not in result.stderr + result.stdout
    assert "hunter2" not in "\n".join(gate.log_lines())


def test_policy_symlink_is_ignored_and_reported(gate: GateEnv, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.policy"
    real.write_text(CRON_POLICY)
    real.chmod(0o600)
    (gate.policy_dir / "charm-ops.policy").symlink_to(real)
    gate.configure(on_policy_error="allow")
    stderr = answered(gate.run("cron", "restart"), 0)
    assert "charm-ops.policy: a symbolic link; not read" in stderr


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda path: path.chmod(0o666), "writable by others than its owner"),
        (lambda path: path.chmod(0o620), "writable by others than its owner"),
        (lambda path: os.chown(path, NOBODY, NOBODY), "owned by uid 65534, not root"),
    ],
)
def test_untrusted_policy_file_is_ignored_and_reported(
    gate: GateEnv, change: Callable[[Path], None], says: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to tell root's files from others')")
    path = gate.write_policy("charm-ops.policy", CRON_POLICY)
    change(path)
    gate.configure(on_policy_error="allow")
    stderr = answered(gate.run("cron", "restart"), 0)
    assert f"charm-ops.policy: {says}; not read" in stderr
    assert gate.event_files() == []


def test_group_writable_policy_directory_is_ignored_and_reported(gate: GateEnv) -> None:
    gate.write_policy("charm-ops.policy", CRON_POLICY)
    gate.policy_dir.chmod(0o775)
    gate.configure(on_policy_error="allow")
    stderr = answered(gate.run("cron", "restart"), 0)
    assert f"{gate.policy_dir}: writable by others than its owner; not read" in stderr


def test_untrusted_event_file_and_directory_are_reported(ledger: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to give a file another owner)")
    (ledger / "charm-ops.deferred").write_text(EVENT)
    planted = ledger / "charm-planted.deferred"
    planted.write_text(EVENT.replace("cron", "ssh"))
    os.chown(planted, NOBODY, NOBODY)
    view = read_ledger(ledger)
    assert [event.service for event in view.events] == ["cron"]
    assert [str(p) for p in view.problems] == [f"{planted}: owned by uid 65534, not root; not read"]
    ledger.chmod(0o1777)
    view = read_ledger(ledger)
    assert view.events == []
    assert [str(p) for p in view.problems] == [
        f"{ledger}: writable by others than its owner; not read"
    ]


def test_hook_records_are_private(tmp_path: Path) -> None:
    store = HookStore(tmp_path / "state")
    hook = store.record("config-changed", ["/usr/bin/env", "PASSWORD=hunter2", "true"])
    assert hook.path is not None
    assert stat.S_IMODE(os.stat(hook.path).st_mode) == 0o600
    assert json.loads(Path(hook.path).read_text())["command"][1] == "PASSWORD=hunter2"
    assert [h.command for h in store.read()[0]] == [hook.command]


def test_a_hook_record_not_roots_alone_is_reported_and_never_returned(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to give a file another owner)")
    store = HookStore(tmp_path / "state")
    kept = store.record("config-changed", ["/bin/true"])
    planted = store.directory / "00000000000000000000-planted.hook"
    planted.write_text(
        json.dumps({"name": "x", "command": ["/bin/sh", "-c", "id"], "timestamp": 0})
    )
    os.chown(planted, NOBODY, NOBODY)
    deep = store.directory / "00000000000000000001-deep.hook"
    deep.write_text("[" * 100_000)
    hooks, problems = store.read()
    assert [hook.path for hook in hooks] == [kept.path]
    planted_problem, deep_problem = sorted(str(p) for p in problems)
    assert planted_problem == f"{planted}: owned by uid 65534, not root; not read"
    assert deep_problem.startswith(f"{deep}: unreadable deferred hook: maximum recursion depth")


def test_gate_conf_writable_by_others_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "gate.conf"
    path.write_text("chain = /tmp/anyone-could-put-this-here\n")
    path.chmod(0o666)
    config, problems = GateConfig.read(str(path))
    assert config.chain is None
    assert [str(p) for p in problems] == [f"{path}: writable by others than its owner; not read"]
