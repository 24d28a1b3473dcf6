"""Service managers: "did it really restart?"

sysv is tested live (cron inside a private PID + mount namespace); systemd on `systemctl show`
output in tests/fixtures/systemd, captured from a systemd lab host by tests/systemd/capture.py
(systemd never runs on this machine itself; tests/systemd drives it live on lab hosts).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host.gate_env import FIXTURES, INTERLOCK, VENV_PYTHON
from host.host_namespace import Namespace
from host.systemctl_replay import install_replay, run_replayed
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.services.base import ServiceState
from interlock.host.services.systemd import (
    parse_show,
    show_command,
    state_from_properties,
    unit_name,
)
from interlock.host.services.sysv import (
    parse_init_script,
    parse_start_ticks,
    process_start_time,
    read_boot_time,
)

SYSTEMD = FIXTURES / "systemd"
# What the captured fixtures show (update after a new capture): the host's boot time, cron as it
# booted, and cron after `systemctl restart cron`.
BOOT = 1796172802.0
CRON_PID, CRON_STARTED, CRON_MONOTONIC = 64, 1796173856, 1054.225887
CRON_INVOCATION = "3755e65676d14b1fb6c085466a2df6f3"
RESTARTED_PID, RESTARTED_AT = 87, 1796173862
SSH_STARTED = 1796173856


def show_output(name: str) -> str:
    """A fixture without its header: exactly what systemctl printed."""
    lines = (SYSTEMD / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def state_of(name: str, unit: str = "cron", boot: float | None = BOOT) -> ServiceState:
    [props] = parse_show(show_output(name))
    return state_from_properties(unit, props, boot)


# -- ServiceState rules -------------------------------------------------------------------------


def test_started_after_counts_only_from_the_next_second() -> None:
    ts = 1_700_000_000
    assert ServiceState("x", True, 1, ts + 1.0).started_after(ts)
    assert ServiceState("x", True, 1, ts + 5.5).started_after(ts)
    # Within the event's own second the order is unknown: not proof of a restart.
    assert not ServiceState("x", True, 1, ts + 0.999).started_after(ts)
    assert not ServiceState("x", True, 1, float(ts)).started_after(ts)
    assert not ServiceState("x", True, 1, ts - 100.0).started_after(ts)
    assert not ServiceState("x", True, 1, None).started_after(ts)
    assert not ServiceState("x", False, None, ts + 100.0).started_after(ts)


def test_differs_from_prefers_the_invocation() -> None:
    old = ServiceState("x", True, 10, 100.0, invocation="a" * 32)
    assert not ServiceState("x", True, 11, 200.0, invocation="a" * 32).differs_from(old)
    assert ServiceState("x", True, 10, 100.0, invocation="b" * 32).differs_from(old)
    assert ServiceState("x", True, 11, 100.0).differs_from(ServiceState("x", True, 10, 100.0))
    assert ServiceState("x", True, 10, 101.0).differs_from(ServiceState("x", True, 10, 100.0))
    assert not ServiceState("x", True, 10, 100.0).differs_from(ServiceState("x", True, 10, 100.0))
    # The same process read twice: boot-time jitter in the start time is not a restart.
    assert not ServiceState("x", True, 10, 100.01).differs_from(ServiceState("x", True, 10, 100.0))
    # sysv's instance id (pid@start tick) decides exactly, whatever the float times say.
    same = ServiceState("x", True, 10, 100.02, invocation="10@5000")
    assert not same.differs_from(ServiceState("x", True, 10, 100.0, invocation="10@5000"))
    assert ServiceState("x", True, 10, 100.0, invocation="10@5001").differs_from(same)
    assert ServiceState("x", True, 10, 100.0).differs_from(ServiceState("x", False))
    assert not ServiceState("x", False).differs_from(ServiceState("x", True, 10, 100.0))


# -- systemd: parsing real-format output --------------------------------------------------------


def test_show_command_asks_for_unix_timestamps_and_ends_options() -> None:
    argv = show_command(["cron.service", "-evil.service"])
    assert argv[:3] == ["systemctl", "show", "--timestamp=unix"]
    assert argv[-3:] == ["--", "cron.service", "-evil.service"]
    for prop in ("InvocationID", "ActiveEnterTimestamp", "ActiveEnterTimestampMonotonic"):
        assert ["-p", prop] == argv[argv.index(prop) - 1 : argv.index(prop) + 1]
    assert "--timestamp=unix" not in show_command(["cron.service"], unix_timestamps=False)
    assert unit_name("cron") == "cron.service"
    assert unit_name("cron.service") == "cron.service"
    assert unit_name("getty@tty1.service") == "getty@tty1.service"
    assert unit_name("openvswitch-switch") == "openvswitch-switch.service"


def test_unix_timestamp_is_read_exactly() -> None:
    state = state_of("cron-active.unix.txt")
    assert state == ServiceState("cron", True, CRON_PID, float(CRON_STARTED), CRON_INVOCATION)
    # No boot time needed: @epoch is absolute.
    assert state_of("cron-active.unix.txt", boot=None).started_at == float(CRON_STARTED)


def test_invocation_change_is_a_restart() -> None:
    before = state_of("cron-active.unix.txt")
    after = state_of("cron-restarted.unix.txt")
    assert after.differs_from(before)
    assert not before.differs_from(before)
    assert after.started_after(CRON_STARTED)
    assert not before.started_after(CRON_STARTED)
    assert after.pid == RESTARTED_PID


@pytest.mark.parametrize("fixture", ["cron-active.text-c.txt", "cron-active.text-de.txt"])
def test_text_timestamps_are_ignored_for_the_monotonic_time(fixture: str) -> None:
    state = state_of(fixture)
    assert state.started_at == pytest.approx(BOOT + CRON_MONOTONIC, abs=1e-6)
    # The monotonic time agrees with the unix timestamp of the same start (btime is whole
    # seconds, the @epoch form truncated).
    assert state.started_at == pytest.approx(CRON_STARTED, abs=1.0)
    # The text form never stands in for a time: without a boot time there is none.
    assert state_of(fixture, boot=None).started_at is None
    assert state_of(fixture, boot=None).invocation == CRON_INVOCATION


def test_both_text_locales_give_the_same_state() -> None:
    assert state_of("cron-active.text-c.txt") == state_of("cron-active.text-de.txt")


def test_never_started_unit_keeps_its_events() -> None:
    state = state_of("never-started.unix.txt", "memcached")
    assert state == ServiceState("memcached", False)
    assert not state.started_after(0)


def test_stopped_unit_is_not_a_restart() -> None:
    state = state_of("stopped.unix.txt")
    assert not state.active
    assert not state.started_after(1600000000)
    assert not state.differs_from(state_of("cron-active.unix.txt"))


def test_unknown_unit() -> None:
    assert state_of("not-found.unix.txt", "nosuch") == ServiceState("nosuch", False)


def test_several_units_one_block_each() -> None:
    blocks = parse_show(show_output("several.unix.txt"))
    assert [block["Id"] for block in blocks] == [
        "cron.service",
        "ssh.service",
        "memcached.service",
        "nosuch.service",
    ]
    states = [state_from_properties(b["Id"], b, None) for b in blocks]
    assert [s.active for s in states] == [True, True, False, False]
    assert states[1].started_at == float(SSH_STARTED)
    assert all(len(b["InvocationID"]) in (0, 32) for b in blocks)


# -- systemd: the manager, with a replayed systemctl in a private mount namespace ----------------

REPLAY = """\
import json, os, sys
config = json.load(open(os.environ.get("REPLAY_CONFIG", "{config}")))
with open(config["log"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if config.get("old") and "--timestamp=unix" in args:
    sys.stderr.write("systemctl: unrecognized option '--timestamp=unix'\\n")
    sys.exit(1)
units = args[args.index("--") + 1 :]
style = "unix" if "--timestamp=unix" in args else "text"
blocks = []
for unit in units:
    text = open(config["units"][unit][style]).read()
    blocks.append("".join(l for l in text.splitlines(True) if not l.startswith("#")).strip("\\n"))
sys.stdout.write("\\n\\n".join(blocks) + "\\n")
"""


@pytest.fixture
def replayed_systemd(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Run code in a mount namespace where /usr/bin/systemctl replays the fixtures and
    /run/systemd/system exists (so interlock picks its systemd backend). Nothing starts systemd.
    """
    script, config = install_replay(tmp_path, REPLAY)

    def run(
        units: dict[str, dict[str, str]], argv: list[str], old: bool = False
    ) -> subprocess.CompletedProcess[str]:
        log = tmp_path / "systemctl.log"
        mapping = {
            unit: {style: str(SYSTEMD / name) for style, name in styles.items()}
            for unit, styles in units.items()
        }
        config.write_text(json.dumps({"log": str(log), "units": mapping, "old": old}))
        return run_replayed(script, argv)

    yield run


CRON_STYLES = {"unix": "cron-active.unix.txt", "text": "cron-active.text-de.txt"}

MANAGER_PROBE = """
import json, sys
from interlock.host.services import detect_manager
manager = detect_manager()
states = manager.states(["cron", "memcached.service"])
print(json.dumps({
    "kind": manager.kind,
    "unix": manager._unix_timestamps,
    "cron": [states["cron"].active, states["cron"].pid, states["cron"].started_at,
             states["cron"].invocation],
    "memcached": [states["memcached.service"].active, states["memcached.service"].started_at],
    "exists": [manager.exists("cron"), manager.exists("nosuch")],
}))
"""


@pytest.mark.root
@pytest.mark.parametrize("old", [False, True], ids=["systemd-252", "systemd-before-248"])
def test_systemd_manager_on_replayed_systemctl(
    replayed_systemd: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    old: bool,
) -> None:
    units = {
        "cron.service": CRON_STYLES,
        "memcached.service": {
            "unix": "never-started.unix.txt",
            "text": "never-started.unix.txt",
        },
        "nosuch.service": {"unix": "not-found.unix.txt", "text": "not-found.unix.txt"},
    }
    result = replayed_systemd(units, [str(VENV_PYTHON), "-c", MANAGER_PROBE], old=old)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["kind"] == "systemd"
    assert seen["unix"] is not old
    active, pid, started, invocation = seen["cron"]
    assert (active, pid, invocation) == (True, CRON_PID, CRON_INVOCATION)
    if old:
        # Monotonic time plus this machine's boot time: the German text was not read.
        assert started == pytest.approx(read_boot_time() + CRON_MONOTONIC, abs=1.0)
    else:
        assert started == float(CRON_STARTED)
    assert seen["memcached"] == [False, None]
    assert seen["exists"] == [True, False]
    calls = [json.loads(line) for line in (tmp_path / "systemctl.log").read_text().splitlines()]
    assert all(call[0] == "show" and "--" in call for call in calls)
    assert calls[0][call_units(calls[0])] == ["cron.service", "memcached.service"]


def call_units(call: list[str]) -> slice:
    return slice(call.index("--") + 1, None)


@pytest.mark.root
def test_check_on_systemd_clears_restarted_and_keeps_never_started(
    replayed_systemd: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    ledger = Ledger(str(root / "var" / "lib" / "policy-rc.d"))
    for service, timestamp, requestor in (
        ("cron", RESTARTED_AT - 5, "a"),  # before the restart: satisfied
        ("cron.service", RESTARTED_AT, "b"),  # same second as the restart: not provably after
        ("memcached", 1600000000, "a"),  # never started: stays
    ):
        event = DeferredEvent(service, "restart", "Package update", timestamp, requestor, "charm")
        ledger.record(event)
    units = {
        "cron.service": {"unix": "cron-restarted.unix.txt", "text": "cron-restarted.unix.txt"},
        "memcached.service": {
            "unix": "never-started.unix.txt",
            "text": "never-started.unix.txt",
        },
    }
    result = replayed_systemd(units, [str(INTERLOCK), "--root", str(root), "check", "--json"])
    assert result.returncode == 1, result.stderr  # something is still pending
    report = json.loads(result.stdout)
    assert [(e["service"], e["timestamp"]) for e in report["cleared"]] == [
        ("cron", RESTARTED_AT - 5)
    ]
    assert sorted((e["service"], e["timestamp"]) for e in report["pending"]) == [
        ("cron.service", RESTARTED_AT),
        ("memcached", 1600000000),
    ]
    assert len(ledger.read().events) == 2


# -- sysv: parsing what is on this machine ------------------------------------------------------


def test_init_scripts_of_real_packages() -> None:
    found = {}
    for name in ("cron", "ssh", "nginx", "memcached", "haproxy"):
        path = Path("/etc/init.d") / name
        if path.exists():
            found[name] = parse_init_script(path.read_text())
    if "cron" not in found:
        pytest.skip("cron is not installed")
    assert found["cron"].pidfile == "/var/run/crond.pid"
    assert found["cron"].daemon == "/usr/sbin/cron"
    if "ssh" in found:  # no PIDFILE variable: named inline in start-stop-daemon calls
        assert found["ssh"].pidfile == "/run/sshd.pid"
    if "nginx" in found:  # PID=$(awk …) is not guessed; the literal default is used
        assert found["nginx"].pidfile == "/run/nginx.pid"
        assert found["nginx"].daemon == "/usr/sbin/nginx"
    if "rabbitmq-server" in found:  # PID_FILE, and a DAEMON that is a shell script
        assert found["rabbitmq-server"].pidfiles == ("/var/run/rabbitmq/pid",)
        assert found["rabbitmq-server"].daemon == "/usr/sbin/rabbitmq-server"
    if "memcached" in found:  # PIDFILE="/var/run/${NAME}.pid" with NAME set in a loop
        assert found["memcached"].pidfiles == ()
        assert found["memcached"].daemon == "/usr/bin/memcached"
    if "ssh" in found:  # no DAEMON=: what start-stop-daemon --exec runs
        assert found["ssh"].daemon == "/usr/sbin/sshd"


def test_pidfile_variables_under_other_names() -> None:
    text = (
        "RUN=/run/svc\nPID_FILE=$RUN/pid\nPIDFILE_WORKER=${RUN}/worker.pid\n"
        "SSHD_PIDFILE=/run/sshd.pid\nPIDDIR=/run/svc\nPIDFILE=$RUN/pid\n"
    )
    info = parse_init_script(text)
    assert info.pidfiles == ("/run/svc/pid", "/run/svc/worker.pid", "/run/sshd.pid")
    assert info.pidfile == "/run/svc/pid"


def test_init_script_parsing_never_runs_substitutions() -> None:
    text = (
        "NAME=x\nPIDFILE=$(touch /tmp/oops)\nDAEMON=`id`\n"
        'start-stop-daemon --pidfile "$RUNDIR/x.pid"\n'
    )
    assert parse_init_script(text).pidfile is None
    assert parse_init_script(text).daemon is None
    expanded = parse_init_script("RUN=/run/svc\nPIDFILE=${RUN}/svc.pid\nDAEMON=/usr/sbin/svc\n")
    assert (expanded.pidfile, expanded.daemon) == ("/run/svc/svc.pid", "/usr/sbin/svc")


def test_start_ticks_of_a_process_whose_name_has_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) (b"
    shutil.copy("/bin/sleep", odd)
    before = time.time()
    proc = subprocess.Popen([str(odd), "30"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        assert "(a) (b)" in stat
        ticks = parse_start_ticks(stat)
        assert ticks > 0
        started = process_start_time(proc.pid, read_boot_time())
        assert started is not None
        # A lower bound of the real start, within the clock tick and boot time rounding.
        assert before - 0.05 <= started <= time.time()
    finally:
        proc.kill()
        proc.wait()
    assert process_start_time(proc.pid, read_boot_time()) is None


# -- sysv: live, with cron in a private namespace ----------------------------------------------

SYSV_SCENARIO = """
import json, os, time
from interlock.host.services.base import ServiceError
from interlock.host.services.sysv import SysvManager

def wait_next_second(ts):
    while time.time() < ts + 1.05:
        time.sleep(0.02)

def view(s):
    return {"active": s.active, "pid": s.pid, "started_at": s.started_at}

m = SysvManager()
out = {"exists": [m.exists("cron"), m.exists("cron.service"), m.exists("nosuch")]}
out["before"] = view(m.state("cron"))
t0 = time.time()
m.act("cron", "start")
first = m.state("cron")
deadline = time.monotonic() + 10
while not first.active and time.monotonic() < deadline:
    time.sleep(0.02)  # cron writes its pidfile itself, after the init script returned
    first = m.state("cron")
out["first"] = view(first)
out["t0"] = t0
event = int(time.time())
out["event"] = event
out["first_satisfies"] = first.started_after(event)
wait_next_second(event)
second = m.restart_and_verify("cron", timeout=30)
out["second"] = view(second)
out["second_satisfies"] = second.started_after(event)
out["same_second_satisfies"] = second.started_after(int(second.started_at))
with open("/run/crond.pid", "w") as handle:
    handle.write("1\\n")  # a stale pidfile naming a process that is not cron
out["stale"] = view(m.state("cron"))
with open("/run/crond.pid", "w") as handle:
    handle.write(f"{second.pid}\\n")
m.act("cron", "stop")
out["stopped"] = view(m.state("cron"))
try:
    m.restart_and_verify("nosuch", timeout=1)
except ServiceError as exc:
    out["nosuch"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.root
def test_sysv_cron_live(namespace: Callable[..., Namespace]) -> None:
    ns = namespace(runlevel="2")
    result = ns.run([str(VENV_PYTHON), "-c", SYSV_SCENARIO], timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["exists"] == [True, True, False]
    assert out["before"] == {"active": False, "pid": None, "started_at": None}
    first, second = out["first"], out["second"]
    assert first["active"] and first["pid"] > 1
    assert out["t0"] - 0.05 <= first["started_at"] <= out["event"] + 1
    assert out["first_satisfies"] is False  # started before the event
    assert second["active"] and second["pid"] != first["pid"]
    assert second["started_at"] >= out["event"] + 1
    assert out["second_satisfies"] is True
    assert out["same_second_satisfies"] is False
    # The pidfile names PID 1 (not cron): the real cron is found by its executable instead.
    assert out["stale"]["active"] is True
    assert out["stale"]["pid"] == second["pid"]
    assert out["stopped"]["active"] is False
    assert "nosuch: no init script at /etc/init.d/nosuch" in out["nosuch"]


def test_boot_time_agrees_with_proc_stat() -> None:
    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    assert abs(read_boot_time() - btime) < 1.5
    assert sys.platform == "linux"
