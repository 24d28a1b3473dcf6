"""The gateway answers as etcd 3.4 (Debian's etcd-server) sent them, captured raw, and the
pure parsers of addresses and FleetLock groups."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from interlock.coordination.backend import Holding
from interlock.coordination.etcd import (
    Endpoint,
    b64,
    keepalive_ttl,
    key_values,
    parse_url,
    prefix_end,
    read_response,
    txn_succeeded,
)
from interlock.coordination.fleetlock import parse_group
from interlock.errors import UsageError

DATA = Path(__file__).with_name("data")


def answer(name: str) -> tuple[int, bool, dict[str, object]]:
    async def read() -> tuple[int, bool, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data((DATA / name).read_bytes())
        reader.feed_eof()
        return await read_response(reader)

    status, keep, body = asyncio.run(read())
    return status, keep, json.loads(body)


def test_range_answer_gives_the_holding() -> None:
    status, keep, body = answer("range.http")
    assert (status, keep) == (200, False)  # the capture asked for Connection: close
    [kv] = key_values(body)
    assert kv.key == "/interlock/slots/role=compute/r1@cmp1"
    assert kv.lease != 0 and kv.create_revision == kv.mod_revision == 2
    holding = Holding.decode(kv.value)
    assert (holding.group, holding.holder, holding.limit, holding.since) == (
        "role=compute", "r1@cmp1", 1, 1700000000.5,
    )  # fmt: skip


def test_keepalive_is_chunked_and_says_when_the_lease_is_gone() -> None:
    status, _, body = answer("keepalive.http")
    assert status == 200 and keepalive_ttl(body) == 30
    status, _, body = answer("keepalive-expired.http")
    assert status == 200 and keepalive_ttl(body) == 0


def test_a_failed_compare_leaves_succeeded_out() -> None:
    status, _, body = answer("txn-failed.http")
    assert status == 200 and "succeeded" not in body
    assert txn_succeeded(body) is False
    assert txn_succeeded({"succeeded": True}) is True


def test_a_bad_request_is_an_error_with_a_message() -> None:
    status, _, body = answer("bad-request.http")
    assert status == 400
    assert body["code"] == 3 and "cannot unmarshal" in str(body["message"])


def test_prefix_end() -> None:
    assert prefix_end("/interlock/slots/") == b64("/interlock/slots0")
    assert prefix_end("role=a") == b64("role=b")


@pytest.mark.parametrize(
    ("text", "endpoints", "tls", "ttl"),
    [
        ("etcd://10.0.0.1:2379", [("10.0.0.1", 2379)], False, None),
        ("etcd://a,b:4001/", [("a", 2379), ("b", 4001)], False, None),
        ("etcds://[fd00::1]:2379?ttl=15", [("fd00::1", 2379)], True, 15),
    ],
)
def test_urls(text: str, endpoints: list[tuple[str, int]], tls: bool, ttl: int | None) -> None:
    url = parse_url(text)
    assert url.endpoints == tuple(Endpoint(h, p) for h, p in endpoints)
    assert (url.tls, url.ttl) == (tls, ttl)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://a:2379", "expected etcd://HOST:PORT"),
        ("etcd://", "give only host:port pairs"),
        ("etcd://a:2379/v3", "give only host:port pairs"),
        ("etcd://user@a:2379", "give only host:port pairs"),
        ("etcd://a:99999", "out of range"),
        ("etcd://a:2379,:2379", "names no host"),
        ("etcd://a?ttl=1", "the only option is ttl=SECONDS"),
        ("etcd://a?timeout=3", "the only option is ttl=SECONDS"),
    ],
)
def test_bad_urls(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_url(text)


def test_fleetlock_groups() -> None:
    assert parse_group("default=1").key == "fleetlock=default"
    rule = parse_group("workers=2:role=compute")
    assert (rule.name, rule.limit, rule.key) == ("workers", 2, "role=compute")
    for bad in ("default", "default=0", "a b=1", "w=1:compute", "w=x"):
        with pytest.raises(UsageError):
            parse_group(bad)
