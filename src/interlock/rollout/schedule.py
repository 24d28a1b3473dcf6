"""Which hosts go together: a canary, then waves, within a maximum unavailable per group.

Waves are cumulative, as in a progressive delivery: `25%, 50%, 100%` means "a quarter of the
hosts done, then half, then all". After the last wave, any hosts left go in batches of
`batch_size` (or all at once). A group is the set of hosts sharing one value of a label (role,
az, a quorum cluster); a batch never holds more hosts of one group than the group may lose at
once, so a stage that would break that limit is split into several batches. The hosts keep the
order they were given in (inventory order), so the plan is the same every time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from interlock.fleet.inventory import Host

# Up to 9 digits: a count beyond that is a typing mistake, and as a float it overflows.
_AMOUNT_RE = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(%?)")


class Rounding(Enum):
    UP = "up"  # progress targets: 25% of 10 hosts is 3, so every wave does something
    DOWN = "down"  # allowances (budgets, limits): 10% of 5 failures allowed is 0


@dataclass(frozen=True)
class Amount:
    """A count of hosts, or a percentage of some total."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str | int) -> Amount:
        if isinstance(text, bool):
            raise ValueError(f"expected a count or a percentage, not {text!r}")
        if isinstance(text, int):
            if text < 0:
                raise ValueError(f"expected a count of 0 or more, not {text}")
            return cls(float(text))
        match = _AMOUNT_RE.fullmatch(str(text).strip())
        if not match:
            raise ValueError(f"expected a count (3) or a percentage (25%), not {text!r}")
        value = float(match[1])
        percent = bool(match[2])
        if percent and value > 100:
            raise ValueError(f"a percentage cannot exceed 100%: {text!r}")
        if not percent and value != int(value):
            raise ValueError(f"a count must be a whole number: {text!r}")
        return cls(value, percent)

    def of(self, total: int, rounding: Rounding) -> int:
        if not self.percent:
            return int(self.value)
        exact = total * self.value / 100
        # Round the product, not the float noise: 70% of 10 is 7, not 7.000000000000001 → 8.
        exact = round(exact, 9)
        return math.ceil(exact) if rounding is Rounding.UP else math.floor(exact)

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return f"{number}%" if self.percent else number


NO_FAILURES = Amount(0)


@dataclass(frozen=True)
class GroupLimit:
    """At most `amount` hosts of each group of `label` unavailable at once (or of one value)."""

    label: str
    amount: Amount
    value: str | None = None  # None: every value of the label
    quorum: bool = False  # a quorum cluster: never more than one member down

    def __str__(self) -> str:
        """The command-line form: LABEL=AMOUNT, or LABEL:VALUE=AMOUNT for one group."""
        if self.quorum:
            return f"{self.label}=1 (quorum)"
        where = self.label if self.value is None else f"{self.label}:{self.value}"
        return f"{where}={self.amount}"


@dataclass(frozen=True)
class Schedule:
    canary: Amount | None = None
    waves: tuple[Amount, ...] = ()
    batch_size: Amount | None = None
    limits: tuple[GroupLimit, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.canary is not None:
            parts.append(f"canary {self.canary}")
        if self.waves:
            parts.append("waves " + ",".join(str(w) for w in self.waves))
        if self.batch_size is not None:
            parts.append(f"batches of {self.batch_size}")
        if self.limits:
            parts.append("max unavailable " + ", ".join(str(limit) for limit in self.limits))
        return "; ".join(parts) or "all hosts in one batch"


@dataclass(frozen=True)
class BatchSlot:
    """One batch of the schedule: the stage it belongs to and its hosts, in order."""

    stage: str
    hosts: tuple[Host, ...]


GroupKey = tuple[str, str]  # (label, value)


class GroupLimits:
    """The resolved limit of every group the given hosts belong to."""

    def __init__(self, hosts: Sequence[Host], limits: Sequence[GroupLimit]) -> None:
        sizes: dict[GroupKey, int] = {}
        for host in hosts:
            for label, value in host.labels.items():
                sizes[(label, value)] = sizes.get((label, value), 0) + 1
        self.limits: dict[GroupKey, int] = {}
        for key, size in sizes.items():
            limit = resolve_limit(limits, key, size)
            if limit is not None:
                self.limits[key] = limit

    def groups_of(self, host: Host) -> list[GroupKey]:
        return [key for key in host.labels.items() if key in self.limits]

    def fits(self, host: Host, counts: Mapping[GroupKey, int]) -> bool:
        """Whether one more host of these groups keeps every group within its limit."""
        return all(counts.get(key, 0) < self.limits[key] for key in self.groups_of(host))

    def blocking(self, host: Host, counts: Mapping[GroupKey, int]) -> list[str]:
        return [
            f"{label}={value} (limit {self.limits[(label, value)]})"
            for label, value in self.groups_of(host)
            if counts.get((label, value), 0) >= self.limits[(label, value)]
        ]


def resolve_limit(limits: Sequence[GroupLimit], key: GroupKey, size: int) -> int | None:
    """The tightest limit that applies to a group; a value-specific one overrides its label's."""
    label, value = key
    if any(limit.quorum and limit.label == label for limit in limits):
        return 1
    specific = [lim for lim in limits if lim.label == label and lim.value == value]
    general = [lim for lim in limits if lim.label == label and lim.value is None]
    chosen = specific or general
    if not chosen:
        return None
    # At least one: a limit of 0 would mean the group can never be touched, which is a
    # --limit, not a schedule.
    return max(1, min(lim.amount.of(size, Rounding.DOWN) for lim in chosen))


def stage_targets(total: int, schedule: Schedule) -> list[tuple[str, int]]:
    """(stage name, cumulative hosts done at its end) for the canary and the waves."""
    stages: list[tuple[str, int]] = []
    done = 0
    if schedule.canary is not None:
        count = min(total, schedule.canary.of(total, Rounding.UP))
        if count > 0:
            stages.append(("canary", count))
            done = count
    for number, wave in enumerate(schedule.waves, start=1):
        target = min(total, wave.of(total, Rounding.UP))
        if target > done:
            stages.append((f"wave {number}", target))
            done = target
    return stages


def plan_batches(hosts: Sequence[Host], schedule: Schedule) -> list[BatchSlot]:
    """Split the hosts into batches; every host lands in exactly one batch."""
    names = [host.name for host in hosts]
    if len(set(names)) != len(names):
        raise ValueError("a host appears twice in the rollout target")
    limits = GroupLimits(hosts, schedule.limits)
    remaining = list(hosts)
    batches: list[BatchSlot] = []
    done = 0

    def fill(stage: str, target: int) -> None:
        nonlocal done, remaining
        part = 0
        while done < target and remaining:
            chosen, remaining = pick(remaining, target - done, limits)
            part += 1
            batches.append(BatchSlot(stage if part == 1 else f"{stage} ({part})", tuple(chosen)))
            done += len(chosen)

    for stage, target in stage_targets(len(hosts), schedule):
        fill(stage, target)
    if schedule.batch_size is not None:
        size = max(1, schedule.batch_size.of(len(hosts), Rounding.UP))
        number = 0
        while remaining:
            number += 1
            fill(f"batch {number}", done + size)
    elif remaining:
        fill("rest" if batches else "all", len(hosts))
    return batches


def pick(
    candidates: Sequence[Host], wanted: int, limits: GroupLimits
) -> tuple[list[Host], list[Host]]:
    """Up to `wanted` hosts, in order, without exceeding a group limit; and those left over.

    The first candidate always fits (every limit is at least 1), so a batch is never empty.
    """
    counts: dict[GroupKey, int] = {}
    chosen: list[Host] = []
    left: list[Host] = []
    for host in candidates:
        if len(chosen) < wanted and limits.fits(host, counts):
            chosen.append(host)
            for key in limits.groups_of(host):
                counts[key] = counts.get(key, 0) + 1
        else:
            left.append(host)
    return chosen, left
