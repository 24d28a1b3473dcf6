"""The pure parsers of what hosts and services answer, on captured real output."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from interlock.host.ledger import LOCK_NAME
from interlock.host.services.base import ServiceState
from interlock.rollout.probes import (
    ReplyError,
    parse_firing_alerts,
    parse_http_reply,
    parse_queues,
)
from interlock.rollout.remote_ledger import (
    listing_command,
    parse_listing,
    parse_removal,
    removal_command,
)
from interlock.rollout.service_state import (
    SYSTEMD,
    ServiceSetup,
    parse_info,
    parse_states,
    runs_daemon,
    state_command,
    state_from_dict,
    state_to_dict,
)

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).parent.parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_prometheus_alerts_only_firing_ones_matching_count() -> None:
    reply = parse_http_reply(fixture("prometheus_alerts_reply.http"))
    assert reply.status == 200
    text = reply.body.decode()
    assert parse_firing_alerts(text, "Rabbit.*") == ["RabbitmqQueueBacklog"]
    # Pending is not firing; the pattern must match the whole name.
    assert parse_firing_alerts(text, "Galera.*") == []
    assert parse_firing_alerts(text, "Rabbit") == []
    assert parse_firing_alerts(text, ".*") == ["RabbitmqQueueBacklog"]
    with pytest.raises(ReplyError, match="did not answer success"):
        parse_firing_alerts('{"status": "error", "error": "bad"}', ".*")


def test_rabbitmq_queue_depth_by_vhost_and_name() -> None:
    reply = parse_http_reply(fixture("rabbitmq_queues_reply.http"))
    assert reply.status == 200
    text = reply.body.decode()
    everything = parse_queues(text)
    assert everything.total == 52
    assert everything.deepest[0] == ("openstack/nova-conductor", 42)
    assert parse_queues(text, vhost="openstack").total == 45
    assert parse_queues(text, vhost="/").total == 7
    assert parse_queues(text, pattern="^reply_").total == 3
    with pytest.raises(ReplyError, match="not JSON"):
        parse_queues("<html>")


def test_rabbitmq_refusal_is_a_status_not_a_crash() -> None:
    reply = parse_http_reply(fixture("rabbitmq_unauthorized_reply.http"))
    assert reply.status == 401
    assert b'"error":"not_authorized"' in reply.body


def test_http_replies_that_are_not_http() -> None:
    with pytest.raises(ReplyError, match="end of headers"):
        parse_http_reply(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n")
    with pytest.raises(ReplyError, match="status line"):
        parse_http_reply(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def setups() -> list[ServiceSetup]:
    info = fixture("service_info_sysv.txt").decode()
    found = parse_info(info, ["lab-api", "cron", "nosuch"])
    return [found["lab-api"], found["cron"], found["nosuch"]]


def test_sysv_info_finds_pidfile_and_daemon_in_the_init_script() -> None:
    lab_api, cron, nosuch = setups()
    assert lab_api.pidfiles[0] == "/tmp/cap/svc/lab-api.pid"
    assert lab_api.daemon == "/tmp/cap/svc/lab-api"
    assert cron.pidfiles == ("/run/cron.pid", "/var/run/cron.pid", "/run/cron/cron.pid")
    assert nosuch.daemon is None


def test_sysv_states_before_and_after_a_restart() -> None:
    chosen = setups()
    before = parse_states(fixture("service_state_sysv_before.txt").decode(), chosen)
    after = parse_states(fixture("service_state_sysv_after.txt").decode(), chosen)
    stopped = parse_states(fixture("service_state_sysv_stopped.txt").decode(), chosen)
    assert before["lab-api"].active and before["lab-api"].pid == 4038
    assert after["lab-api"].pid == 4152
    assert after["lab-api"].differs_from(before["lab-api"])
    assert not before["lab-api"].differs_from(before["lab-api"])
    assert before["lab-api"].started_at is not None and after["lab-api"].started_at is not None
    assert after["lab-api"].started_at > before["lab-api"].started_at
    assert not before["cron"].active and not before["nosuch"].active
    assert not stopped["lab-api"].active


def test_a_pid_that_now_runs_another_program_is_not_the_service() -> None:
    # What the state command prints when asked for a service whose DAEMON is sshd but whose
    # pidfile holds the lab API's pid.
    text = (
        fixture("service_state_sysv_before.txt")
        .decode()
        .replace("real /tmp/cap/svc/lab-api lab-api", "real /usr/sbin/sshd lab-api")
    )
    other = ServiceSetup("lab-api", "sysv", ("/tmp/cap/svc/lab-api.pid",), "/usr/sbin/sshd")
    assert not parse_states(text, [other])["lab-api"].active
    assert runs_daemon("/usr/sbin/cron", None, "/usr/sbin/cron", [])
    assert runs_daemon("/usr/sbin/x", "/usr/lib/x/x", "/usr/lib/x/x", [])
    assert runs_daemon(
        "/usr/sbin/api", None, "/usr/bin/python3.11", ["/usr/bin/python3", "-I", "/usr/sbin/api"]
    )
    assert not runs_daemon(
        "/usr/sbin/api", None, "/usr/bin/python3.11", ["/usr/bin/python3", "/tmp/other"]
    )


def test_systemd_states_come_from_systemctl_show() -> None:
    lines = (SHARED / "systemd" / "several.unix.txt").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#"))
    names = ["cron", "ssh", "memcached", "nosuch"]
    chosen = [ServiceSetup(name, SYSTEMD) for name in names]
    assert state_command(chosen)[:2] == ["systemctl", "show"]
    assert state_command(chosen)[-4:] == [f"{name}.service" for name in names]
    states = parse_states(text, chosen)
    assert states["cron"].invocation == "4b1c6f0f2d8a4c1e9a7d5e3b2c1a0f98"
    assert states["ssh"].active and states["ssh"].pid == 655
    assert not states["memcached"].active and not states["nosuch"].active
    restarted_lines = (SHARED / "systemd" / "cron-restarted.unix.txt").read_text().splitlines()
    after = parse_states(
        "\n".join(line for line in restarted_lines if not line.startswith("#")), chosen[:1]
    )
    assert after["cron"].differs_from(states["cron"])
    with pytest.raises(ValueError, match="described 1 units, asked 4"):
        parse_states("\n".join(restarted_lines[-8:]), chosen)


def test_states_survive_the_journal_round_trip() -> None:
    state = ServiceState("cron", True, 612, 1700000000.25, "4b1c")
    assert state_from_dict(state_to_dict(state)) == state


def test_systemd_info_needs_no_init_scripts() -> None:
    found = parse_info("manager systemd\n", ["cron"])
    assert found == {"cron": ServiceSetup("cron", SYSTEMD)}
    with pytest.raises(ValueError, match="unexpected"):
        parse_info("sh: 1: syntax error", ["cron"])


def test_ledger_listing_of_a_charm_managed_host(tmp_path: Path) -> None:
    """The listing command run for real over the charms' ledger files, then parsed."""
    ledger = tmp_path / "policy-rc.d"
    shutil.copytree(SHARED / "charm" / "ledger-neutron-gateway", ledger)
    (ledger / "broken.deferred").write_text("service: [unclosed\n")
    (ledger / "ignored.txt").write_text("not an event\n")
    output = subprocess.run(
        listing_command(str(ledger)), capture_output=True, text=True, check=True
    ).stdout
    listing = parse_listing(output)
    assert len(listing.events) == 7
    assert listing.services == sorted({event.unit for event in listing.events})
    assert "openvswitch-switch" in listing.services
    assert all(
        path.startswith(str(ledger) + "/") for s in listing.services for path in listing.paths_of(s)
    )
    assert len(listing.problems) == 1 and "broken.deferred" in listing.problems[0]


def test_ledger_listing_of_a_host_without_a_ledger(tmp_path: Path) -> None:
    output = subprocess.run(
        listing_command(str(tmp_path / "absent")), capture_output=True, text=True, check=True
    ).stdout
    assert output == ""
    assert parse_listing(output).events == ()


def test_removal_takes_the_ledger_lock_and_keeps_what_changed(tmp_path: Path) -> None:
    ledger = tmp_path / "policy-rc.d"
    shutil.copytree(SHARED / "charm" / "ledger-neutron-gateway", ledger)
    (ledger / "odd.deferred").write_bytes(b"\xff not UTF-8\n")
    listing = parse_listing(
        subprocess.run(listing_command(str(ledger)), capture_output=True, check=True).stdout.decode(
            "utf-8", "surrogateescape"
        )
    )
    paths = sorted(listing.digests)
    changed, unchanged = paths[0], paths[1:]
    Path(changed).write_text(Path(changed).read_text().replace("timestamp: ", "timestamp: 1"))
    command = removal_command(str(ledger), listing, paths)
    with open(ledger / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.Popen(command, stdout=subprocess.PIPE)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=0.5)  # the ledger's writers hold the lock: removal waits
        assert Path(changed).exists() and all(Path(p).exists() for p in unchanged)
    output, _ = waiting.communicate(timeout=30)
    assert sorted(parse_removal(output.decode())) == unchanged
    assert sorted(p.name for p in ledger.glob("*.deferred")) == [Path(changed).name]
