"""Disruption slots in etcd: a counting semaphore per group, shared by every actor.

Keys (under /interlock/):
  slots/<group>/<holder>   one per held slot, value = the Holding as JSON, under the actor's lease
  guard/<group>            rewritten by every acquisition in the group
  hosts/<host>             the host's current holder (one actor per host at a time)
  runs/<run>               who runs what, under the lease (for `rollout status`, `slots list`)
  released/<time>-<holder> an operator's explicit release, kept (no lease)

Acquisition is read, then one transaction guarded by revisions. The read is itself one
transaction (one revision): the slots of every group, their guards and the host key. The write
commits only if every guard's and the host key's mod_revision is still what was read, and it
rewrites every guard. So two acquisitions that read the same state cannot both commit (the
second's guard compare fails), and a committed one counted every slot that any committed
acquisition had put before it. Slots only disappear otherwise (release, lease expiry, an
operator), which can only lower a count. Hence a group never holds more than its limit.

Liveness: the slots hang on one lease per actor, renewed in the background. When renewal fails
for longer than the TTL (the members are down or have no quorum, or the lease expired), the
actor is "lost": `acquire` waits and says "coordination lost: …"; when etcd answers again a new
lease is granted and the slots still held are put back before anything else is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interlock.coordination.backend import (
    Coordination,
    CoordinationError,
    Group,
    Holding,
    Report,
    holder_id,
)
from interlock.coordination.etcd import (
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    EtcdUrl,
    b64,
    key_values,
    prefix_end,
)

ROOT = "/interlock/"
DEFAULT_TTL = 10
POLL = 0.25  # how often a waiting acquisition looks again


def _part(text: str) -> str:
    return urllib.parse.quote(text, safe="=:.-_@+")


def slot_prefix(group: str) -> str:
    return f"{ROOT}slots/{_part(group)}/"


def slot_key(group: str, holder: str) -> str:
    return slot_prefix(group) + _part(holder)


def guard_key(group: str) -> str:
    return f"{ROOT}guard/{_part(group)}"


def host_key(host: str) -> str:
    return f"{ROOT}hosts/{_part(host)}"


def run_key(run: str) -> str:
    return f"{ROOT}runs/{_part(run)}"


def actor_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _compare_mod(key: str, revision: int) -> dict[str, Any]:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def _put(key: str, value: bytes | str, lease: int) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def _range(key: str, prefix: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    return {"request_range": body}


def _delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


@dataclass(frozen=True)
class Snapshot:
    """What one acquisition read, at one revision."""

    holders: dict[str, list[Holding]]  # group -> other holders
    guards: dict[str, int]  # group -> guard mod_revision (0: none yet)
    host_holder: str | None
    host_revision: int


class SlotStore:
    """Slot operations on etcd that need no session: read, acquire once, release, list."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client

    async def read(self, host: str, groups: Sequence[Group], me: str) -> Snapshot:
        ops = [_range(host_key(host))]
        for group in groups:
            ops += [_range(slot_prefix(group.key), prefix=True), _range(guard_key(group.key))]
        _, answer = await self.client.txn([], ops)
        results = [r.get("response_range", {}) for r in answer.get("responses", [])]
        host_kvs = key_values(results[0])
        holders: dict[str, list[Holding]] = {}
        guards: dict[str, int] = {}
        for index, group in enumerate(groups):
            slots = key_values(results[1 + 2 * index])
            guard = key_values(results[2 + 2 * index])
            holders[group.key] = [
                holding
                for holding in (_decode(kv.value, kv.key) for kv in slots)
                if holding.holder != me
            ]
            guards[group.key] = guard[0].mod_revision if guard else 0
        return Snapshot(
            holders,
            guards,
            host_kvs[0].value.decode(errors="replace") if host_kvs else None,
            host_kvs[0].mod_revision if host_kvs else 0,
        )

    async def try_acquire(
        self,
        holding: Holding,
        groups: Sequence[Group],
        lease: int,
        *,
        over_limit: bool = False,
    ) -> str | None:
        """One attempt: None when every slot is held now, else why not (full, host taken)."""
        me = holding.holder
        while True:
            seen = await self.read(holding.host, groups, me)
            if seen.host_holder is not None and seen.host_holder != me:
                return f"{holding.host} is held by {seen.host_holder}"
            if not over_limit:
                full = [group for group in groups if len(seen.holders[group.key]) >= group.limit]
                if full:
                    group = full[0]
                    who = ", ".join(h.holder for h in seen.holders[group.key][:3])
                    taken = len(seen.holders[group.key])
                    return f"{group.key}: {taken} of {group.limit} slot(s) taken ({who})"
            compare = [_compare_mod(host_key(holding.host), seen.host_revision)]
            success = [_put(host_key(holding.host), me, lease)]
            for group in groups:
                compare.append(_compare_mod(guard_key(group.key), seen.guards[group.key]))
                mine = Holding(
                    group.key,
                    group.limit,
                    me,
                    holding.run,
                    holding.host,
                    holding.kind,
                    holding.actor,
                    holding.since,
                )
                success.append(_put(slot_key(group.key, me), mine.encode(), lease))
                success.append(_put(guard_key(group.key), me, 0))
            committed, _ = await self.client.txn(compare, success)
            if committed:
                return None
            # Someone changed a group or the host in between: read again.

    async def release(self, host: str, groups: Sequence[str], me: str) -> None:
        """One transaction: our slots go; the host key too if it is still ours (after a lost
        lease it may be someone else's)."""
        slots = [_delete(slot_key(group, me)) for group in groups]
        await self.client.txn(
            [{"key": b64(host_key(host)), "target": "VALUE", "result": "EQUAL", "value": b64(me)}],
            [*slots, _delete(host_key(host))],
            slots,
        )

    async def holdings(self) -> list[Holding]:
        answer = await self.client.range(f"{ROOT}slots/", prefix=True)
        found = [_decode(kv.value, kv.key) for kv in key_values(answer)]
        return sorted(found, key=lambda h: (h.group, h.since, h.holder))

    async def runs(self) -> dict[str, dict[str, Any]]:
        answer = await self.client.range(f"{ROOT}runs/", prefix=True)
        runs: dict[str, dict[str, Any]] = {}
        for kv in key_values(answer):
            with contextlib.suppress(ValueError):
                data = json.loads(kv.value)
                if isinstance(data, dict):
                    runs[str(data.get("run", kv.key))] = data
        return runs

    async def force_release(self, group: str, holder: str, by: str, reason: str) -> Holding:
        """An operator frees `holder`'s slot in `group`; recorded under released/."""
        key = slot_key(group, holder)
        current = await self.client.get(key)
        if current is None:
            others = [h.holder for h in await self.holdings() if h.group == group]
            held = f"; its holders: {', '.join(others)}" if others else "; it has no holders"
            raise CoordinationError(f"{holder} holds no slot in group {group}{held}")
        holding = _decode(current.value, current.key)
        record = {
            "group": group,
            "holder": holder,
            "by": by,
            "reason": reason,
            "at": time.time(),
            "held_since": holding.since,
        }
        committed, _ = await self.client.txn(
            [_compare_mod(key, current.mod_revision)],
            [
                _delete(key),
                _put(
                    f"{ROOT}released/{time.time():.6f}-{_part(holder)}",
                    json.dumps(record, sort_keys=True),
                    0,
                ),
            ],
        )
        if not committed:
            raise CoordinationError(f"{holder}'s slot in {group} changed meanwhile: try again")
        await self.client.txn(
            [
                {
                    "key": b64(host_key(holding.host)),
                    "target": "VALUE",
                    "result": "EQUAL",
                    "value": b64(holder),
                }
            ],
            [_delete(host_key(holding.host))],
        )
        return holding


def _decode(value: bytes, key: str) -> Holding:
    try:
        return Holding.decode(value)
    except (ValueError, KeyError, TypeError):
        # Not written by interlock: show it, and count it, rather than ignore it.
        name = key.rsplit("/", 1)[-1]
        return Holding("?", 0, name, "?", "?", "unknown", "?", 0.0)


class EtcdCoordination(Coordination):
    def __init__(self, url: EtcdUrl, ttl: int = DEFAULT_TTL) -> None:
        self.url = url
        self.ttl = ttl
        # Short enough that trying every member still leaves time to renew within the TTL.
        self.client = EtcdClient(url, min(2.0, max(0.5, ttl / 5)))
        self.store = SlotStore(self.client)
        self.lease = 0
        self.lost: str | None = None
        self.regained = asyncio.Event()
        self.held: dict[str, tuple[Holding, tuple[Group, ...]]] = {}
        # Released by the executor but not yet in etcd (it did not answer): retried until it does,
        # since our live lease would otherwise keep them, and count them against us, forever.
        self.unreleased: dict[str, tuple[Holding, tuple[Group, ...]]] = {}
        self.run = ""
        self.kind = ""
        self.what = ""
        self.actor = actor_name()
        self.keeper: asyncio.Task[None] | None = None

    async def open(self, run: str, kind: str, what: str) -> None:
        self.run, self.kind, self.what = run, kind, what
        try:
            await self._new_lease()
        except (EtcdUnavailable, EtcdError) as exc:
            raise CoordinationError(f"coordination {self.url}: {exc}") from None
        self.keeper = asyncio.ensure_future(self._keep_alive())

    async def _new_lease(self) -> None:
        lease = await self.client.grant(self.ttl)
        info = {
            "run": self.run,
            "kind": self.kind,
            "what": self.what,
            "actor": self.actor,
            "since": time.time(),
        }
        await self.client.put(run_key(self.run), json.dumps(info, sort_keys=True), lease)
        self.lease = lease

    async def _keep_alive(self) -> None:
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl / 3 if self.lost is None else POLL * 2)
            if self.lost is not None:
                await self._recover()
                if self.lost is None:
                    last_ok = time.monotonic()
                continue
            try:
                remaining = await self.client.keepalive(self.lease)
            except (EtcdUnavailable, EtcdError) as exc:
                if time.monotonic() - last_ok > self.ttl:
                    self._lose(f"no renewal for {self.ttl}s: {exc}")
                continue
            if remaining <= 0:
                self._lose("the lease expired (slots may have been taken by others)")
                continue
            last_ok = time.monotonic()
            await self._release_pending()

    def _lose(self, reason: str) -> None:
        self.lost = reason
        self.regained.clear()
        self.notify(f"coordination lost: {reason}; starting no host until etcd answers again")

    async def _recover(self) -> None:
        old = self.lease
        try:
            await self._new_lease()
            for holding, groups in list(self.held.values()):
                # These hosts are disrupted already: record them truthfully, even over a limit.
                await self.store.try_acquire(holding, groups, self.lease, over_limit=True)
            # What still hangs on the old lease (slots whose release failed meanwhile) goes now.
            with contextlib.suppress(EtcdError):
                await self.client.revoke(old)
            self.unreleased.clear()  # they hung on the old lease
        except (EtcdUnavailable, EtcdError):
            return
        self.lost = None
        self.regained.set()
        self.notify(f"coordination regained: {len(self.held)} held slot(s) put back")

    async def acquire(self, host: str, groups: Sequence[Group], report: Report) -> None:
        me = holder_id(self.run, host)
        wanted = Holding("", 0, me, self.run, host, self.kind, self.actor, time.time())
        while True:
            await self._release_pending()
            if self.lost is not None:
                report(f"coordination lost: {self.lost}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL * 4):
                        await self.regained.wait()
                continue
            try:
                why = await self.store.try_acquire(wanted, groups, self.lease)
            except EtcdUnavailable as exc:
                report(f"coordination lost: {exc}")
                await asyncio.sleep(POLL)
                continue
            except EtcdError as exc:
                raise CoordinationError(f"coordination {self.url}: {exc}") from None
            if why is None:
                self.held[host] = (wanted, tuple(groups))
                return
            report(f"waiting for a slot: {why}")
            await asyncio.sleep(POLL)

    async def release(self, host: str) -> None:
        entry = self.held.pop(host, None)
        if entry is None:
            return
        self.unreleased[host] = entry
        if not await self._release_pending():
            self.notify(f"could not release {host}'s slots yet: etcd does not answer; retrying")

    async def _release_pending(self) -> bool:
        """Release what is waiting to be; False if etcd did not answer."""
        for host, (holding, groups) in list(self.unreleased.items()):
            try:
                await self.store.release(host, [g.key for g in groups], holding.holder)
            except (EtcdUnavailable, EtcdError):
                return False
            self.unreleased.pop(host, None)
        return True

    async def close(self) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keeper
        if self.lease and self.lost is None:
            with contextlib.suppress(EtcdUnavailable, EtcdError):
                await self.client.revoke(self.lease)
        await self.client.close()
