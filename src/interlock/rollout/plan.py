"""The plan as data: batches → hosts → steps, each step with what it does and how.

`rollout plan` prints this tree and `rollout run` executes the very same records (the journal
stores them), so what was shown is what runs. A step is either work (sticky: once done it stays
done, even across retries of its host) or a check or a transition (re-done on a retry). A step
may name its undo, which cleanup runs when the host fails or is interrupted after the step
started; a later step in the normal flow may declare that it undoes it (enable undoes drain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, ClassVar

from interlock.fleet.inventory import Host, LoadBalancer
from interlock.host.ledger import LEDGER_DIR
from interlock.rollout.reboot_steps import BootRecord, CameBack, Reboot
from interlock.rollout.schedule import NO_FAILURES, Amount, GroupLimit
from interlock.rollout.window import ALWAYS, MaintenanceWindow, WindowSchedule

# --- probes: one check with a yes/no answer ---------------------------------------------------


@dataclass(frozen=True)
class HttpProbe:
    url: str
    expect: tuple[int, ...] = (200,)
    contains: str | None = None
    timeout: float = 5.0

    def describe(self) -> str:
        codes = "/".join(str(code) for code in self.expect)
        body = f" containing {self.contains!r}" if self.contains else ""
        return f"GET {self.url} → {codes}{body}"


@dataclass(frozen=True)
class TcpProbe:
    address: str
    port: int
    timeout: float = 5.0

    def describe(self) -> str:
        return f"TCP connect {self.address}:{self.port}"


@dataclass(frozen=True)
class CommandProbe:
    """A command on the host (or, in a pre-gate, on `on` or on this machine) that must exit 0."""

    argv: tuple[str, ...]
    on: str | None = None
    timeout: float = 30.0

    def describe(self) -> str:
        where = f" on {self.on}" if self.on else ""
        return f"$ {shlex.join(self.argv)}{where}"


@dataclass(frozen=True)
class RabbitQueuesProbe:
    """The RabbitMQ management API's queues hold at most `max_messages` messages (ready+unacked)."""

    url: str
    max_messages: int
    user: str = "guest"
    password_file: str | None = None
    vhost: str | None = None
    pattern: str | None = None
    timeout: float = 10.0

    def describe(self) -> str:
        which = f" matching /{self.pattern}/" if self.pattern else ""
        where = f" in vhost {self.vhost}" if self.vhost else ""
        return f"RabbitMQ queues{which}{where} at {self.url} hold ≤ {self.max_messages} messages"


@dataclass(frozen=True)
class PrometheusAlertsProbe:
    """No alert whose name matches `pattern` is firing in Prometheus."""

    url: str
    pattern: str
    timeout: float = 10.0

    def describe(self) -> str:
        return f"no firing alert matching /{self.pattern}/ at {self.url}"


Probe = HttpProbe | TcpProbe | CommandProbe | RabbitQueuesProbe | PrometheusAlertsProbe


# --- actions: what a step does ------------------------------------------------------------------


@dataclass(frozen=True)
class RunCommand:
    """Run argv on the host. `check` exiting 0 means the work is already done (skip it)."""

    kind: ClassVar[str] = "command"
    argv: tuple[str, ...]
    check: tuple[str, ...] | None = None
    ok_exits: tuple[int, ...] = (0,)
    again_exits: tuple[int, ...] = ()  # run again after again_delay (e.g. partial migrations)
    again_delay: float = 1.0
    again_limit: int = 100
    timeout: float | None = None

    def describe(self) -> str:
        return "run a command"

    def commands(self) -> list[str]:
        lines = [f"$ {shlex.join(self.argv)}"]
        if self.again_exits:
            codes = "/".join(str(code) for code in self.again_exits)
            lines[0] += f"   (again while it exits {codes}, ≤ {self.again_limit} times)"
        if self.check:
            lines.append(f"skipped when this exits 0: $ {shlex.join(self.check)}")
        return lines


@dataclass(frozen=True)
class RestartServices:
    """Restart named services one at a time; through interlock on the host, or `service`."""

    kind: ClassVar[str] = "restart"
    services: tuple[str, ...]
    via: str = "service"  # "service" or "interlock"
    interlock: tuple[str, ...] = ("interlock",)
    timeout: float = 120.0

    def describe(self) -> str:
        return "restart " + ", ".join(self.services)

    def argvs(self) -> list[list[str]]:
        if self.via == "interlock":
            timeout = f"{self.timeout:g}"
            return [[*self.interlock, "restart", "--json", "--timeout", timeout, *self.services]]
        return [["service", service, "restart"] for service in self.services]

    def commands(self) -> list[str]:
        return [f"$ {shlex.join(argv)}" for argv in self.argvs()]


@dataclass(frozen=True)
class ApplyDeferred:
    """Apply the host's deferred restarts: `interlock restart --deferred-only`, or the ledger."""

    kind: ClassVar[str] = "deferred"
    via: str = "interlock"  # "interlock" or "ledger" (hosts without interlock installed)
    interlock: tuple[str, ...] = ("interlock",)
    ledger_dir: str = LEDGER_DIR
    timeout: float = 120.0

    def describe(self) -> str:
        return "apply the deferred restarts"

    def argv(self) -> list[str]:
        return [
            *self.interlock,
            "restart",
            "--deferred-only",
            "--json",
            "--timeout",
            f"{self.timeout:g}",
        ]

    def check_argv(self) -> list[str]:
        return [*self.interlock, "check", "--json"]

    def commands(self) -> list[str]:
        if self.via == "interlock":
            return [f"$ {shlex.join(self.check_argv())}", f"$ {shlex.join(self.argv())}"]
        return [
            f"for each service with events in {self.ledger_dir}/*.deferred: "
            "$ service SERVICE restart, verify it restarted, then remove its event files "
            "still as read, under the ledger's lock"
        ]


@dataclass(frozen=True)
class Snapshot:
    """Record the services' pid, start time and InvocationID before the action touches them."""

    kind: ClassVar[str] = "snapshot"
    services: tuple[str, ...] = ()
    deferred: bool = False  # also the services with deferred events
    ledger_dir: str = LEDGER_DIR

    def describe(self) -> str:
        names = list(self.services)
        if self.deferred:
            names.append(f"every service with deferred events in {self.ledger_dir}")
        return "record the state of " + ", ".join(names) + " (pid, start time, InvocationID)"

    def commands(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Drain:
    """Drain every haproxy server that points at the host, and wait for its sessions to end."""

    kind: ClassVar[str] = "drain"
    address: str
    port: int | None = None
    timeout: float = 30.0
    on_timeout: str = "fail"  # fail | force | continue

    def describe(self) -> str:
        where = self.address if self.port is None else f"{self.address}:{self.port}"
        return (
            f"drain every haproxy server at {where}; wait for 0 sessions "
            f"(≤ {self.timeout:g} s, then {self.on_timeout})"
        )

    def commands(self) -> list[str]:
        return ["haproxy: set server BACKEND/SERVER state drain (each LB); poll show stat scur"]


@dataclass(frozen=True)
class Enable:
    """Put the host's haproxy servers back in rotation and wait until they are UP."""

    kind: ClassVar[str] = "enable"
    address: str
    port: int | None = None
    timeout: float = 30.0

    def describe(self) -> str:
        where = self.address if self.port is None else f"{self.address}:{self.port}"
        return f"set every haproxy server at {where} ready; wait until UP (≤ {self.timeout:g} s)"

    def commands(self) -> list[str]:
        return ["haproxy: set server BACKEND/SERVER state ready (each LB); poll until UP"]


@dataclass(frozen=True)
class Gate:
    """Probes that must all pass `passes` times in a row, polled every `interval`, by `deadline`."""

    kind: ClassVar[str] = "gate"
    probes: tuple[Probe, ...]
    passes: int = 1
    interval: float = 1.0
    deadline: float = 120.0

    def describe(self) -> str:
        times = "once" if self.passes == 1 else f"{self.passes} times in a row"
        return f"pass {times}, every {self.interval:g} s, within {self.deadline:g} s:"

    def commands(self) -> list[str]:
        return [probe.describe() for probe in self.probes]


@dataclass(frozen=True)
class Restarted:
    """The snapshotted services are active and really restarted since (a new run of each)."""

    kind: ClassVar[str] = "restarted"
    snapshot: str  # the id of the snapshot step to compare with
    deadline: float = 60.0
    interval: float = 0.5

    def describe(self) -> str:
        return (
            f"each service recorded by {self.snapshot} runs as a new instance "
            f"(InvocationID, pid or start time), within {self.deadline:g} s"
        )

    def commands(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Soak:
    """Stay healthy for a while: wait, then the probes once more."""

    kind: ClassVar[str] = "soak"
    seconds: float
    probes: tuple[Probe, ...] = ()

    def describe(self) -> str:
        then = ", then the health probes once more" if self.probes else ""
        return f"soak {self.seconds:g} s{then}"

    def commands(self) -> list[str]:
        return []


Action = (
    RunCommand
    | RestartServices
    | ApplyDeferred
    | Snapshot
    | Drain
    | Enable
    | Gate
    | Restarted
    | Soak
    | BootRecord
    | Reboot
    | CameBack
)


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: str
    action: Action
    sticky: bool = False
    undo: Action | None = None
    undoes: str | None = None
    left_on_failure: str | None = None  # what cleanup deliberately leaves, said in the plan
    title: str | None = None

    @property
    def description(self) -> str:
        return self.title or self.action.describe()


@dataclass(frozen=True)
class Debt:
    """A service a host owes a restart, as the fleet status read its ledger when planning."""

    service: str
    since: int  # epoch seconds of its oldest pending event
    reasons: tuple[str, ...]

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.service} since {when}: {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class HostPlan:
    host: Host
    steps: tuple[Step, ...]
    # The step whose `check` tells, before the host is touched, whether it has work at all.
    work_check: str | None = None
    # What the host owed when planned (None: not read), or why its ledger could not be read.
    # Information for people: each attempt reads the ledger again and pays what is owed then.
    debt: tuple[Debt, ...] | None = None
    debt_unread: str | None = None

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def fingerprint(self) -> str:
        """Changes when anything about what would run on this host changes."""
        work = {k: v for k, v in encode(self).items() if k not in ("debt", "debt_unread")}
        payload = json.dumps(work, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PreGates:
    probes: tuple[Probe, ...] = ()
    interval: float = 5.0
    timeout: float = 600.0


@dataclass(frozen=True)
class Batch:
    id: str
    stage: str
    hosts: tuple[HostPlan, ...]
    concurrency: int
    stagger: float = 0.0
    jitter: float = 0.0
    pre_gates: PreGates = field(default_factory=PreGates)

    @property
    def canary(self) -> bool:
        return self.stage.startswith("canary")


@dataclass(frozen=True)
class Plan:
    title: str
    batches: tuple[Batch, ...]
    limits: tuple[GroupLimit, ...] = ()
    failure_budget: Amount = NO_FAILURES
    on_failure: str = "pause"  # pause | abort
    windows: WindowSchedule = ALWAYS
    schedule: str = ""  # how the batches were made, for people
    gate_hosts: tuple[Host, ...] = ()  # hosts that pre-gate commands run on

    def gate_host(self, name: str) -> Host:
        for host in self.gate_hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def hosts(self) -> list[HostPlan]:
        return [host for batch in self.batches for host in batch.hosts]

    def batch(self, batch_id: str) -> Batch:
        for batch in self.batches:
            if batch.id == batch_id:
                return batch
        raise KeyError(batch_id)

    def to_json(self) -> str:
        return json.dumps(encode(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        plan = decode(json.loads(text))
        if not isinstance(plan, Plan):
            raise ValueError("not a stored plan")
        return plan

    def __str__(self) -> str:
        return render(self)


# --- rendering --------------------------------------------------------------------------------


def render(plan: Plan) -> str:
    hosts = plan.hosts
    lines = [f"{plan.title}: {_count(len(hosts), 'host')} in {_count(len(plan.batches), 'batch')}"]
    if plan.schedule:
        lines.append(f"  schedule: {plan.schedule}")
    lines.append(
        f"  failure budget: {plan.failure_budget} host(s), then {plan.on_failure}"
        " (a failure in a canary batch always stops)"
    )
    lines.append(f"  maintenance window: {plan.windows.describe()}")
    for number, batch in enumerate(plan.batches, start=1):
        lines.append("")
        spacing = f", stagger {batch.stagger:g} s" if batch.stagger else ""
        spacing += f" + up to {batch.jitter:g} s jitter" if batch.jitter else ""
        lines.append(
            f"Batch {number}/{len(plan.batches)} · {batch.stage} · "
            f"{_count(len(batch.hosts), 'host')} (at most {batch.concurrency} at once{spacing})"
        )
        gates = batch.pre_gates
        if gates.probes:
            lines.append(
                f"  before it, wait (every {gates.interval:g} s, ≤ {gates.timeout:g} s) until:"
            )
            lines.extend(f"    - {probe.describe()}" for probe in gates.probes)
        for host_plan in batch.hosts:
            lines.extend(render_host(host_plan))
    return "\n".join(lines)


def render_host(host_plan: HostPlan) -> list[str]:
    host = host_plan.host
    lines = [f"  {host.name} ({host.address})"]
    if host_plan.debt:
        lines.extend(f"     owes {debt.describe()}" for debt in host_plan.debt)
    elif host_plan.debt is not None:
        lines.append("     owes nothing now (its ledger is read again when its turn comes)")
    elif host_plan.debt_unread is not None:
        lines.append(f"     owes: unknown ({host_plan.debt_unread})")
    width = max((len(step.id) for step in host_plan.steps), default=0)
    for number, step in enumerate(host_plan.steps, start=1):
        lines.append(f"    {number:>2} {step.id:<{width}}  {step.description}")
        pad = " " * (width + 9)
        lines.extend(f"{pad}{command}" for command in step.action.commands())
    cleanup = [
        f"undo {step.id}: {step.undo.describe()}"
        for step in reversed(host_plan.steps)
        if step.undo is not None
    ]
    cleanup += [
        f"after {step.id}: {step.left_on_failure}"
        for step in host_plan.steps
        if step.left_on_failure
    ]
    if cleanup:
        lines.append("     on failure: " + "; ".join(cleanup))
    return lines


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{number} {noun if number == 1 else plural}"


# --- a plan stored as JSON (in the journal) -----------------------------------------------------

_RECORDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        HttpProbe,
        TcpProbe,
        CommandProbe,
        RabbitQueuesProbe,
        PrometheusAlertsProbe,
        RunCommand,
        RestartServices,
        ApplyDeferred,
        Snapshot,
        Drain,
        Enable,
        Gate,
        Restarted,
        Soak,
        BootRecord,
        Reboot,
        CameBack,
        Step,
        Debt,
        HostPlan,
        PreGates,
        Batch,
        Plan,
        Host,
        LoadBalancer,
        Amount,
        GroupLimit,
        MaintenanceWindow,
        WindowSchedule,
    )
}


def encode(value: object) -> Any:
    """Plain JSON values; records carry their type name so decoding needs no guessing."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _RECORDS:
            raise TypeError(f"cannot store a {name} in a plan")
        data = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"@": name, **data}
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if isinstance(value, frozenset | set):
        return {"@set": sorted(encode(item) for item in value)}
    if isinstance(value, time):
        return {"@time": value.strftime("%H:%M")}
    if isinstance(value, Mapping):
        return {"@map": {str(key): encode(item) for key, item in value.items()}}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store {value!r} in a plan")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return tuple(decode(item) for item in data)
    if isinstance(data, dict):
        if "@set" in data:
            return frozenset(decode(item) for item in data["@set"])
        if "@time" in data:
            hour, minute = str(data["@time"]).split(":")
            return time(int(hour), int(minute))
        if "@map" in data:
            return {key: decode(item) for key, item in data["@map"].items()}
        name = data.get("@")
        cls = _RECORDS.get(str(name))
        if cls is None:
            raise ValueError(f"unknown record type {name!r} in a stored plan")
        try:
            return cls(**{key: decode(item) for key, item in data.items() if key != "@"})
        except TypeError as exc:  # a field this version does not have, or lacks
            raise ValueError(f"stored {name} does not match this version: {exc}") from None
    return data
