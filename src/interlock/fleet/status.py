"""Fleet status: every host's deferred restarts and hooks in one view, in one round trip each.

Each host is read with the ledger fact (`facts.ledger`): hosts need nothing but `sh`, and a host
that only a charm manages is read exactly like one interlock manages. An event whose service has
started since is shown as such ("restarted since"): `interlock check` on the host would clear it.
The rollout plans from this same view.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from interlock.facts import ledger as ledger_fact
from interlock.facts.ledger import LedgerFact
from interlock.facts.reading import run_fact
from interlock.facts.sections import new_marker
from interlock.fleet.inventory import Host
from interlock.fleet.transport import HostOutcome, Transport, fan_out
from interlock.host.ledger import LEDGER_DIR, DeferredEvent
from interlock.host.reboot import RebootNeed
from interlock.host.services.base import ServiceState


@dataclass(frozen=True)
class HostDebt:
    """One host's deferred work as its ledger fact found it."""

    host: Host
    ledger: LedgerFact

    @property
    def hostname(self) -> str:
        return self.ledger.hostname

    @property
    def events(self) -> list[DeferredEvent]:
        return list(self.ledger.events)

    @property
    def hooks(self) -> list[str]:
        return list(self.ledger.hooks)

    @property
    def states(self) -> dict[str, ServiceState]:
        return dict(self.ledger.states)

    @property
    def problems(self) -> list[str]:
        return list(self.ledger.problems)

    @property
    def reboot(self) -> RebootNeed | None:
        return self.ledger.reboot

    def restarted_since(self, event: DeferredEvent) -> bool:
        return self.ledger.restarted_since(event)

    def state(self, event: DeferredEvent) -> str:
        return self.ledger.state(event)

    @property
    def pending(self) -> list[DeferredEvent]:
        return self.ledger.pending


@dataclass(frozen=True)
class FleetStatus:
    hosts: list[HostDebt]
    unreachable: list[tuple[Host, str]]
    duration: float

    @property
    def problems(self) -> list[str]:
        """Files that could not be read, on hosts that could: the view misses what they hold."""
        return [problem for debt in self.hosts for problem in debt.problems]

    @property
    def complete(self) -> bool:
        return not self.unreachable and not self.problems

    def per_service(self) -> Counter[str]:
        return Counter(event.unit for debt in self.hosts for event in debt.pending)

    def per_group(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for debt in self.hosts:
            if debt.pending or debt.hooks:
                counts.update(debt.host.groups or ("ungrouped",))
        return counts

    def as_dict(self) -> dict[str, object]:
        now = int(time.time())
        return {
            "duration_s": round(self.duration, 3),
            "hosts": [
                {
                    "host": debt.host.name,
                    "hostname": debt.hostname,
                    "groups": list(debt.host.groups),
                    "restarts": [
                        {
                            **{k: v for k, v in event.as_dict().items() if k != "path"},
                            "file": event.path,
                            "age_s": max(0, now - event.timestamp),
                            "restarted_since": debt.restarted_since(event),
                            "state": debt.state(event),
                        }
                        for event in debt.events
                    ],
                    "hooks": debt.hooks,
                    "reboot": debt.reboot.as_dict() if debt.reboot else None,
                    "problems": debt.problems,
                }
                for debt in self.hosts
            ],
            "unreachable": [
                {"host": host.name, "reason": reason} for host, reason in self.unreachable
            ],
            "totals": {
                "per_service": dict(sorted(self.per_service().items())),
                "per_group": dict(sorted(self.per_group().items())),
                "hosts_with_pending": sum(1 for d in self.hosts if d.pending or d.hooks),
                "hosts_needing_reboot": sum(1 for d in self.hosts if d.reboot and d.reboot.needed),
            },
        }


async def gather_status(
    hosts: Sequence[Host],
    transport: Transport,
    window: int = 24,
    timeout: float = 30.0,
    progress: Callable[[HostOutcome[HostDebt], int, int], None] | None = None,
    ledger_dir: str = LEDGER_DIR,
) -> FleetStatus:
    """Probe every host through a sliding window; unreachable hosts are listed, not dropped."""
    marker = new_marker()
    started = time.monotonic()

    async def probe(host: Host) -> HostDebt:
        result = await run_fact(transport, host, ledger_fact.command(marker, ledger_dir), timeout)
        result.check()
        text = result.stdout.decode("utf-8", "surrogateescape")
        return HostDebt(host, ledger_fact.parse(text, marker, host.name))

    outcomes = await fan_out(hosts, probe, window=window, progress=progress)
    debts = [o.value for o in outcomes if o.ok and o.value is not None]
    unreachable = [(o.host, o.reason or "unknown error") for o in outcomes if not o.ok]
    return FleetStatus(debts, unreachable, time.monotonic() - started)


def gather_status_sync(
    hosts: Sequence[Host],
    transport: Transport,
    window: int = 24,
    timeout: float = 30.0,
    ledger_dir: str = LEDGER_DIR,
) -> FleetStatus:
    async def main() -> FleetStatus:
        try:
            return await gather_status(hosts, transport, window, timeout, ledger_dir=ledger_dir)
        finally:
            await transport.close()

    return asyncio.run(main())
