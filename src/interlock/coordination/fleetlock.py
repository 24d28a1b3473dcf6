"""A FleetLock server (the protocol Zincati and other reboot managers speak) on etcd slots.

`POST /v1/pre-reboot` takes a slot (recursive: the holder taking it again succeeds) and
`POST /v1/steady-state` releases it (only its holder's; releasing nothing is a success). Both
need the header `fleet-lock-protocol: true` and a JSON body
`{"client_params": {"id": "...", "group": "..."}}`. Success is 200; a refusal is a non-2xx status
with a JSON `{"kind": ..., "value": ...}`.

A FleetLock group maps to an interlock group key (default `fleetlock=<group>`; `--group
workers=1:role=compute` makes it count in the same budget as rollouts limiting role=compute).
Slots of FleetLock clients have no lease: a host holds its slot across its reboot, however long
the server is down meanwhile, until it reports steady state or an operator releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass

from interlock.coordination.backend import Group, Holding, holder_id
from interlock.coordination.etcd import EtcdError, EtcdUnavailable
from interlock.coordination.etcd_slots import SlotStore, actor_name
from interlock.errors import UsageError

RUN = "fleetlock"
MAX_REQUEST = 64 * 1024
_GROUP_RE = re.compile(r"[A-Za-z0-9.-]+")
_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class GroupRule:
    name: str
    limit: int
    key: str


def parse_group(text: str) -> GroupRule:
    """`NAME=LIMIT` or `NAME=LIMIT:LABEL=VALUE` (count in that interlock group)."""
    name, sep, rest = text.partition("=")
    limit_text, _, key = rest.partition(":")
    if not sep or not _GROUP_RE.fullmatch(name) or not limit_text.isdigit():
        raise UsageError(f"{text!r}: expected NAME=LIMIT or NAME=LIMIT:LABEL=VALUE")
    if int(limit_text) < 1:
        raise UsageError(f"{text!r}: the limit must be at least 1")
    if key and "=" not in key:
        raise UsageError(f"{text!r}: the interlock group is LABEL=VALUE, not {key!r}")
    return GroupRule(name, int(limit_text), key or f"fleetlock={name}")


class Refusal(Exception):
    def __init__(self, status: int, kind: str, value: str) -> None:
        super().__init__(value)
        self.status = status
        self.kind = kind
        self.value = value


class FleetLock:
    def __init__(self, store: SlotStore, groups: dict[str, GroupRule]) -> None:
        self.store = store
        self.groups = groups
        self.actor = actor_name()

    def rule(self, group: str) -> GroupRule:
        rule = self.groups.get(group)
        if rule is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise Refusal(404, "unknown_group", f"group {group!r} is not configured ({known})")
        return rule

    async def pre_reboot(self, client: str, group: str) -> None:
        rule = self.rule(group)
        me = holder_id(RUN, client)
        wanted = Holding(rule.key, rule.limit, me, RUN, client, RUN, self.actor, time.time())
        try:
            why = await self.store.try_acquire(wanted, [Group(rule.key, rule.limit)], 0)
        except (EtcdUnavailable, EtcdError) as exc:
            raise Refusal(503, "coordination_unavailable", str(exc)) from None
        if why is not None:
            raise Refusal(409, "failed_lock", f"no slot free in group {group}: {why}")

    async def steady_state(self, client: str, group: str) -> None:
        rule = self.rule(group)
        try:
            await self.store.release(client, [rule.key], holder_id(RUN, client))
        except (EtcdUnavailable, EtcdError) as exc:
            raise Refusal(503, "coordination_unavailable", str(exc)) from None

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if path not in ("/v1/pre-reboot", "/v1/steady-state"):
            raise Refusal(404, "not_found", f"no such endpoint {path[:100]!r}")
        if method != "POST":
            raise Refusal(405, "method_not_allowed", "FleetLock operations are POST requests")
        if headers.get("fleet-lock-protocol", "").lower() != "true":
            raise Refusal(400, "missing_header", "the fleet-lock-protocol: true header is required")
        try:
            params = json.loads(body)["client_params"]
            client, group = params["id"], params["group"]
        except (ValueError, KeyError, TypeError):
            raise Refusal(
                400, "invalid_body", 'expected {"client_params": {"id": …, "group": …}}'
            ) from None
        if not isinstance(client, str) or not _ID_RE.fullmatch(client):
            raise Refusal(400, "invalid_id", "client_params.id must be a short machine id")
        if not isinstance(group, str) or not _GROUP_RE.fullmatch(group):
            raise Refusal(400, "invalid_group", "client_params.group must match [A-Za-z0-9.-]+")
        if path == "/v1/pre-reboot":
            await self.pre_reboot(client, group)
        else:
            await self.steady_state(client, group)


class FleetLockServer:
    """HTTP/1.1 over asyncio, one request per connection, bodies capped."""

    def __init__(self, lock: FleetLock, timeout: float = 10.0) -> None:
        self.lock = lock
        self.timeout = timeout

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.connection, host, port)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                status, answer = await self.answer(reader)
            payload = json.dumps(answer).encode()
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}.get(
                status, "Error"
            )
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        request = (await reader.readline()).decode("latin-1").split()
        if len(request) != 3:
            return 400, {"kind": "bad_request", "value": "not an HTTP request"}
        method, path, _ = request
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) > 100:
                return 400, {"kind": "bad_request", "value": "too many headers"}
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return 400, {"kind": "bad_request", "value": "bad Content-Length"}
        if not 0 <= length <= MAX_REQUEST:
            return 413, {"kind": "too_large", "value": f"bodies are at most {MAX_REQUEST} bytes"}
        body = await reader.readexactly(length)
        try:
            await self.lock.handle(method, path, headers, body)
        except Refusal as refusal:
            return refusal.status, {"kind": refusal.kind, "value": refusal.value}
        return 200, {}
