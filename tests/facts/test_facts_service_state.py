"""The service state fact on output of a lab host and of systemd, and its daemon check."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.facts import service_state
from interlock.host.services.base import ServiceState

FIXTURES = Path(__file__).parent.parent / "fixtures"
MARKER = "@@interlock-fixture"
SERVICES = ["lab-api", "cron", "nosuch"]


def captured(name: str) -> str:
    return (FIXTURES / "facts" / name).read_text()


def test_a_sysv_service_before_and_after_a_restart_and_stopped() -> None:
    before = service_state.parse(captured("service-state-ctl1-before.txt"), MARKER, SERVICES)
    after = service_state.parse(captured("service-state-ctl1-after.txt"), MARKER, SERVICES)
    stopped = service_state.parse(captured("service-state-ctl1-stopped.txt"), MARKER, SERVICES)
    assert before["lab-api"].active and after["lab-api"].active
    assert after["lab-api"].pid != before["lab-api"].pid
    assert after["lab-api"].differs_from(before["lab-api"])
    assert not before["lab-api"].differs_from(before["lab-api"])
    assert not before["cron"].active and not before["nosuch"].active  # no cron on controllers
    assert not stopped["lab-api"].active
    # Whole-second btime plus ticks at the host's rate: the same process reads the same.
    assert before["lab-api"].started_at is not None
    assert before["lab-api"].started_at * 100 == pytest.approx(
        round(before["lab-api"].started_at * 100)
    )


def test_a_pid_that_now_runs_another_program_is_not_the_service() -> None:
    # As if the init script's DAEMON were another program: lab-api's pidfile then names a
    # process that is not it.
    text = captured("service-state-ctl1-before.txt").replace(
        "/usr/sbin/lab-api\n@@", "/usr/sbin/other-daemon\n@@"
    )
    text = text.replace("DAEMON=/usr/sbin/lab-api", "DAEMON=/usr/sbin/other-daemon")
    assert not service_state.parse(text, MARKER, SERVICES)["lab-api"].active


def test_the_tick_rate_is_the_hosts() -> None:
    text = captured("service-state-ctl1-before.txt")
    normal = service_state.parse(text, MARKER, SERVICES)["lab-api"].started_at
    doubled = service_state.parse(
        text.replace(f"{MARKER} ticks\n100\n", f"{MARKER} ticks\n200\n"), MARKER, SERVICES
    )["lab-api"].started_at
    assert normal is not None and doubled is not None and doubled < normal


def test_runs_daemon_by_executable_real_path_script_name_or_command_line() -> None:
    runs = service_state.runs_daemon
    assert runs("/usr/sbin/cron", None, "/usr/sbin/cron", "cron", [])
    assert runs("/usr/sbin/x", "/usr/lib/x/x", "/usr/lib/x/x", "x", [])
    assert runs("/usr/sbin/lab-api", "/usr/sbin/lab-api", "/usr/bin/python3.11", "lab-api", [])
    assert runs(
        "/usr/sbin/api",
        None,
        "/usr/bin/python3.11",
        "python3",
        ["/usr/bin/python3", "-I", "/usr/sbin/api"],
    )
    assert not runs(
        "/usr/sbin/api", None, "/usr/bin/python3.11", "python3", ["/usr/bin/python3", "/tmp/x"]
    )


def test_systemd_states_come_from_systemctl_show() -> None:
    lines = (FIXTURES / "systemd" / "several.unix.txt").read_text().splitlines()
    body = "\n".join(line for line in lines if not line.startswith("#"))
    names = ["cron", "ssh", "memcached", "nosuch"]
    states = service_state.parse(f"{MARKER} systemd\n{body}\n", MARKER, names)
    # Values of the capture (tests/systemd/capture.py).
    assert states["cron"].invocation == "3755e65676d14b1fb6c085466a2df6f3"
    assert states["ssh"].active and states["ssh"].pid == 70
    assert not states["memcached"].active and not states["nosuch"].active
    restarted = (FIXTURES / "systemd" / "cron-restarted.unix.txt").read_text().splitlines()
    body = "\n".join(line for line in restarted if not line.startswith("#"))
    after = service_state.parse(f"{MARKER} systemd\n{body}\n", MARKER, ["cron.service"])
    assert after["cron.service"].differs_from(states["cron"])


def test_output_that_is_not_the_commands_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected"):
        service_state.parse("sh: 1: syntax error", MARKER, ["cron"])


def test_states_survive_the_journal_round_trip() -> None:
    state = ServiceState("cron", True, 612, 1700000000.25, "4b1c")
    assert service_state.from_dict(service_state.as_dict(state)) == state
