"""The pure parsers of what hosts and services answer, on captured real output."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from interlock.facts import ledger
from interlock.facts.sections import new_marker
from interlock.host.ledger import LOCK_NAME
from interlock.rollout import ledger_removal
from interlock.rollout.probes import (
    ReplyError,
    parse_firing_alerts,
    parse_http_reply,
    parse_queues,
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


def test_removal_takes_the_ledger_lock_and_keeps_what_changed(tmp_path: Path) -> None:
    """Clearing a ledger on a host without interlock: run for real on the charms' files."""
    directory = tmp_path / "policy-rc.d"
    shutil.copytree(SHARED / "charm" / "ledger-neutron-gateway", directory)
    (directory / "odd.deferred").write_bytes(b"\xff not UTF-8\n")
    marker = new_marker()
    read = subprocess.run(
        ledger.command(marker, str(directory), str(tmp_path / "hooks")),
        capture_output=True,
        check=True,
    ).stdout
    fact = ledger.parse(read.decode("utf-8", "surrogateescape"), marker, "gw1")
    paths = sorted(fact.digests)
    changed, unchanged = paths[0], paths[1:]
    Path(changed).write_text(Path(changed).read_text().replace("timestamp: ", "timestamp: 1"))
    command = ledger_removal.command(str(directory), fact.digests, paths)
    with open(directory / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.Popen(command, stdout=subprocess.PIPE)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=0.5)  # the ledger's writers hold the lock: removal waits
        assert Path(changed).exists() and all(Path(p).exists() for p in unchanged)
    output, _ = waiting.communicate(timeout=30)
    assert sorted(ledger_removal.parse(output.decode())) == unchanged
    assert sorted(p.name for p in directory.glob("*.deferred")) == [Path(changed).name]
