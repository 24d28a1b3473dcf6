"""An in-process transport for the executor's scheduling and journal logic, and plan builders.

Only the engine's own seam is faked: each command is a tiny script the fake interprets (work,
mark/unmark a flag, check a flag, hang). Everything that talks to real programs is tested with
the real LocalTransport in the integration tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from interlock.fleet.inventory import Host
from interlock.fleet.transport.base import CommandResult, Transport
from interlock.rollout.balancer import NoBalancer
from interlock.rollout.events import Event, EventBus
from interlock.rollout.executor import Executor, RunOutcome
from interlock.rollout.journal import Journal, RunRecord
from interlock.rollout.plan import Batch, HostPlan, Plan, PreGates, RunCommand, Step
from interlock.rollout.runs import Session, execute, start_run
from interlock.rollout.schedule import NO_FAILURES, Amount, GroupLimit, Schedule, plan_batches


@dataclass
class Call:
    host: str
    argv: tuple[str, ...]
    start: float
    end: float = 0.0


@dataclass
class ScriptedTransport(Transport):
    """`work`: takes `duration`, counts an application, fails for hosts in `failing`;
    `mark F` / `unmark F`: set or clear a per-host flag; `has F`: exit 0 if set;
    `applied`: exit 0 if the host's work was applied; `hang`: never returns."""

    failing: set[str] = field(default_factory=set)
    duration: float = 0.0
    calls: list[Call] = field(default_factory=list)
    flags: dict[str, set[str]] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)

    async def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        remote_timeout: bool = True,
    ) -> CommandResult:
        call = Call(host.name, tuple(argv), time.monotonic())
        self.calls.append(call)
        status = 0
        verb = argv[0]
        flags = self.flags.setdefault(host.name, set())
        if verb == "work":
            await asyncio.sleep(self.duration)
            if host.name in self.failing:
                status = 1
            else:
                self.applied[host.name] = self.applied.get(host.name, 0) + 1
        elif verb == "mark":
            flags.add(argv[1])
        elif verb == "unmark":
            flags.discard(argv[1])
        elif verb == "has":
            status = 0 if argv[1] in flags else 1
        elif verb == "applied":
            status = 0 if self.applied.get(host.name) else 1
        elif verb == "hang":
            await asyncio.sleep(3600)
        else:
            status = 127
        call.end = time.monotonic()
        stderr = b"" if status == 0 else f"{verb} failed on {host.name}\n".encode()
        return CommandResult(host.name, status, b"", stderr, call.end - call.start)

    async def put_file(self, host: Host, data: bytes, path: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    async def get_file(self, host: Host, path: str) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def commands(self, host: str) -> list[tuple[str, ...]]:
        return [call.argv for call in self.calls if call.host == host]


def fleet(count: int, **labels: Sequence[str]) -> list[Host]:
    return [
        Host(
            name=f"h{index}",
            address="127.0.0.1",
            labels={name: values[index % len(values)] for name, values in labels.items()},
        )
        for index in range(count)
    ]


def marked_steps(host: Host, work: Sequence[str] = ("work",)) -> tuple[Step, ...]:
    """mark (undone by unmark on failure) → the work → unmark: a drain/enable stand-in."""
    return (
        Step("mark", RunCommand(("mark", "drained")), undo=RunCommand(("unmark", "drained"))),
        Step("work", RunCommand(tuple(work), check=("applied",)), sticky=True),
        Step("unmark", RunCommand(("unmark", "drained")), undoes="mark"),
    )


def make_plan(
    hosts: Sequence[Host],
    *,
    schedule: Schedule | None = None,
    concurrency: int | None = None,
    budget: Amount = NO_FAILURES,
    on_failure: str = "pause",
    stagger: float = 0.0,
    limits: Iterable[GroupLimit] = (),
    work: Sequence[str] = ("work",),
    hanging: Iterable[str] = (),
    pre_gates: PreGates | None = None,
) -> Plan:
    hang = set(hanging)
    chosen = schedule or Schedule(batch_size=Amount(len(hosts)))
    chosen = Schedule(
        chosen.canary, chosen.waves, chosen.batch_size, tuple(limits) or chosen.limits
    )
    batches = tuple(
        Batch(
            id=f"b{number}",
            stage=slot.stage,
            hosts=tuple(
                HostPlan(host, marked_steps(host, ("hang",) if host.name in hang else work))
                for host in slot.hosts
            ),
            concurrency=concurrency or len(slot.hosts),
            stagger=stagger,
            pre_gates=pre_gates or PreGates(),
        )
        for number, slot in enumerate(plan_batches(hosts, chosen), start=1)
    )
    return Plan("test", batches, chosen.limits, budget, on_failure)


@dataclass
class Harness:
    journal: Journal
    transport: ScriptedTransport
    events: list[Event] = field(default_factory=list)
    executor: Executor | None = None

    def start(self, plan: Plan) -> RunRecord:
        return start_run(self.journal, plan, {"transport": "fake"})

    async def execute(self, run: RunRecord) -> RunOutcome:
        bus = EventBus()
        bus.subscribe(self.events.append)

        def keep(executor: Executor) -> None:
            self.executor = executor

        session = Session(self.transport, NoBalancer(), self.transport)
        return await execute(
            self.journal, self.journal.run(run.id), bus, session=session, on_executor=keep
        )

    def kinds(self, kind: str, state: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (state is None or e.state == state)]
