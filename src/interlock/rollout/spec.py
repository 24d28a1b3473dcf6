"""The rollout spec: a YAML file and command-line flags, validated into frozen records.

Every mistake in the file is an error naming the file and the line; a mistake in a flag names the
flag (the flags are the table in interlock.rollout.options). The file's layout:

```yaml
limit: controllers              # which inventory hosts (an Ansible-style pattern)
action:                         # exactly one of deferred / restart / command
  deferred: interlock           # or `ledger`, for hosts without interlock installed
  reboot: needed                # or always: reboot (instead of restarting) hosts that need it
  reboot_command: systemctl reboot
  reboot_timeout: 10m           # to come back from a new boot
schedule:
  canary: 1
  waves: [25%, 50%, 100%]       # cumulative: a quarter done, then half, then all
  batch_size: 10                # after the waves (default 1 when there are no waves)
  concurrency: 5                # hosts at once inside a batch (default: the batch)
  max_unavailable: {role: 1, "role:compute": 10%}
  quorum: [galera]              # labels whose groups never lose more than one host
  stagger: 5s
  jitter: 2s
  windows: [{days: mon-fri, start: "22:00", end: "04:00", timezone: Europe/Berlin}]
drain: {port: 8080, timeout: 30s, on_timeout: fail, on_failure: enable}
pre_gates: {checks: [{http: "http://127.0.0.1:9090/-/ready"}], interval: 5s, timeout: 10m}
post_gates:
  probes: [{http: "http://{address}:8080/health"}, {tcp: "{address}:8080"}]
  passes: 3
  interval: 1s
  deadline: 2m
  soak: 10s
failures: {budget: 0, on_failure: pause}
coordination: etcd://10.0.0.1:2379,10.0.0.2:2379   # slots shared with other actors (default local)
```
Commands and post-gate probes may name the host: {name}, {address}, {labels[KEY]} (other braces,
such as a shell's ${VAR}, are left alone in commands). `interlock:` says how to run interlock on
the hosts, `ledger_dir:` where their deferred restarts are recorded.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import shlex
import string
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.documents import MarkedMap, MarkedReader, MarkedSeq, load_yaml, read_text
from interlock.errors import FileFormatError, UsageError
from interlock.host.ledger import LEDGER_DIR
from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.rollout.plan import (
    CommandProbe,
    HttpProbe,
    PreGates,
    Probe,
    PrometheusAlertsProbe,
    RabbitQueuesProbe,
    TcpProbe,
)
from interlock.rollout.reboot_steps import ALWAYS, WHEN
from interlock.rollout.reboot_steps import DEFAULT_COMMAND as DEFAULT_REBOOT_COMMAND
from interlock.rollout.reboot_steps import DEFAULT_DEADLINE as DEFAULT_REBOOT_DEADLINE
from interlock.rollout.schedule import NO_FAILURES, Amount, GroupLimit, Schedule
from interlock.rollout.window import (
    MaintenanceWindow,
    WindowError,
    check_timezone,
    parse_clock,
    parse_days,
    parse_window,
)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
TEMPLATE_FIELDS = ("name", "address", "labels")

_TOP_KEYS = (
    "inventory",
    "limit",
    "transport",
    "interlock",
    "ledger_dir",
    "action",
    "schedule",
    "drain",
    "pre_gates",
    "post_gates",
    "failures",
    "coordination",
)
_ACTION_KEYS = (
    "deferred",
    "restart",
    "command",
    "check",
    "via",
    "timeout",
    "reboot",
    "reboot_command",
    "reboot_timeout",
)
_SCHEDULE_KEYS = (
    "canary",
    "waves",
    "batch_size",
    "concurrency",
    "max_unavailable",
    "quorum",
    "stagger",
    "jitter",
    "windows",
)
_WINDOW_KEYS = ("days", "start", "end", "timezone")
_DRAIN_KEYS = ("enabled", "port", "timeout", "on_timeout", "on_failure")
_PRE_KEYS = ("checks", "interval", "timeout")
_POST_KEYS = ("restarted", "probes", "passes", "interval", "deadline", "soak")
_FAILURE_KEYS = ("budget", "on_failure")
_PROBE_KEYS = {
    "http": ("http", "expect", "contains", "timeout"),
    "tcp": ("tcp", "timeout"),
    "command": ("command", "host", "timeout"),
    "rabbitmq": ("rabbitmq", "max_messages", "user", "password_file", "vhost", "queues", "timeout"),
    "prometheus": ("prometheus", "alert", "timeout"),
}


@dataclass(frozen=True)
class ActionSpec:
    kind: str = "deferred"  # deferred | restart | command
    via: str = "interlock"  # deferred: interlock | ledger; restart: service | interlock
    services: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    check: tuple[str, ...] | None = None
    timeout: float = 120.0
    reboot: str | None = None  # with deferred: reboot the hosts that need it (or always)
    reboot_argv: tuple[str, ...] = DEFAULT_REBOOT_COMMAND
    reboot_timeout: float = DEFAULT_REBOOT_DEADLINE

    def describe(self) -> str:
        if self.reboot == ALWAYS:
            return "reboot (paying the deferred restarts)"
        if self.reboot is not None:
            return f"reboot where needed, else apply deferred restarts (via {self.via})"
        if self.kind == "deferred":
            return f"apply deferred restarts (via {self.via})"
        if self.kind == "restart":
            return f"restart {', '.join(self.services)} (via {self.via})"
        return f"run {shlex.join(self.argv)}"


@dataclass(frozen=True)
class DrainSpec:
    enabled: bool = False
    port: int | None = None
    timeout: float = 30.0
    on_timeout: str = "fail"  # fail | force | continue
    on_failure: str = "enable"  # enable | leave-drained


@dataclass(frozen=True)
class PostGateSpec:
    restarted: bool = True
    probes: tuple[Probe, ...] = ()  # templates: {name}, {address}, {labels[az]}
    passes: int = 1
    interval: float = 1.0
    deadline: float = 120.0
    soak: float = 0.0


@dataclass(frozen=True)
class RolloutSpec:
    path: str | None = None
    inventory: str | None = None
    limit: str | None = None
    transport: str = "ssh"  # ssh | local
    interlock: tuple[str, ...] = ("interlock",)
    ledger_dir: str = LEDGER_DIR
    action: ActionSpec = field(default_factory=ActionSpec)
    schedule: Schedule = field(default_factory=Schedule)
    concurrency: int | None = None
    stagger: float = 0.0
    jitter: float = 0.0
    windows: tuple[MaintenanceWindow, ...] = ()
    drain: DrainSpec = field(default_factory=DrainSpec)
    pre_gates: PreGates = field(default_factory=PreGates)
    post_gates: PostGateSpec = field(default_factory=PostGateSpec)
    failure_budget: Amount = NO_FAILURES
    on_failure: str = "pause"  # pause | abort
    coordination: str | None = None  # None/local, or etcd://host:port,… shared slots


# --- values shared by the file and the flags ----------------------------------------------------


def parse_duration(value: object) -> float:
    """Seconds from `5`, `2.5`, `500ms`, `5s`, `2m`, `1h`, `1h30m`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
                raise ValueError(
                    f"expected a duration like 30s, 2m or 1h30m, not {text!r}"
                ) from None
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            seconds = sum(float(number) * scale[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, not {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def parse_period(value: object) -> float:
    """A timeout, an interval or a deadline: a duration longer than 0 (0 would spin or expire
    before anything could answer)."""
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError(f"must be longer than 0, not {value!r}")
    return seconds


def parse_limit(text: str) -> GroupLimit:
    """`LABEL=AMOUNT` for every group of a label, `LABEL:VALUE=AMOUNT` for one group."""
    where, sep, amount = text.partition("=")
    if not sep:
        raise ValueError(f"expected LABEL=AMOUNT or LABEL:VALUE=AMOUNT, not {text!r}")
    label, colon, value = where.partition(":")
    check_label(label)
    if colon and not value:
        raise ValueError(f"empty label value in {text!r}")
    parsed = Amount.parse(amount)
    if parsed.value == 0:
        raise ValueError(f"a maximum unavailable of 0 would never let {where} proceed")
    return GroupLimit(label, parsed, value if colon else None)


def check_label(label: str) -> str:
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"invalid label name {label!r}")
    return label


def check_services(names: Sequence[object]) -> tuple[str, ...]:
    services: list[str] = []
    for name in names:
        if not isinstance(name, str) or not is_valid_service_name(name):
            raise ValueError(f"not a valid service name: {name!r}")
        service = canonical_service(name)
        if service not in services:
            services.append(service)
    if not services:
        raise ValueError("no services named")
    return tuple(services)


def parse_argv(value: object) -> tuple[str, ...]:
    """A command as a list of arguments, or a string split the way a POSIX shell would."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command {value!r}: {exc}") from None
    elif isinstance(value, list | tuple) and all(isinstance(a, str | int) for a in value):
        argv = [str(a) for a in value]
    else:
        raise ValueError(f"expected a command (a string or a list of strings), not {value!r}")
    if not argv or any("\0" in arg for arg in argv):
        raise ValueError(f"empty or invalid command {value!r}")
    return tuple(argv)


def check_template(text: str) -> str:
    """Probe targets may use {name}, {address} and {labels[KEY]}, nothing else."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        base = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if base not in TEMPLATE_FIELDS:
            raise ValueError(
                f"unknown field {{{field_name}}} in {text!r} "
                "(use {name}, {address} or {labels[KEY]})"
            )
        if base == "labels" and not re.fullmatch(r"labels\[[A-Za-z0-9_.-]+\]", field_name):
            raise ValueError(f"write a label as {{labels[KEY]}}, not {{{field_name}}}")
    return text


def check_url(text: str) -> str:
    check_template(text)
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"expected an http:// or https:// URL, not {text!r}")
    return text


def parse_tcp(text: str, timeout: float = 5.0) -> TcpProbe:
    check_template(text)
    address, sep, port = text.removeprefix("tcp://").rpartition(":")
    if not sep or not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ADDRESS:PORT (e.g. {{address}}:8080), not {text!r}")
    return TcpProbe(address.removeprefix("[").removesuffix("]"), int(port), timeout)


def parse_gate(text: str) -> Probe:
    """The command-line form of a probe: an http(s) URL, tcp://ADDRESS:PORT, or cmd:COMMAND."""
    if text.startswith(("http://", "https://")):
        return HttpProbe(check_url(text))
    if text.startswith("tcp://"):
        return parse_tcp(text)
    if text.startswith("cmd:"):
        argv = parse_argv(text[4:])
        for arg in argv:
            check_template(arg)
        return CommandProbe(argv)
    raise ValueError(
        f"expected http://…, https://…, tcp://ADDRESS:PORT or cmd:COMMAND, not {text!r}"
    )


def parse_pre_gate(text: str) -> Probe:
    """`http://…`, `cmd:COMMAND`, `rabbitmq=MAX@URL` or `alerts=PATTERN@URL`."""
    if text.startswith("rabbitmq="):
        limit, sep, url = text[len("rabbitmq=") :].partition("@")
        if not sep or not limit.isdigit():
            raise ValueError(f"expected rabbitmq=MAX_MESSAGES@URL, not {text!r}")
        return RabbitQueuesProbe(check_plain_url(url), int(limit))
    if text.startswith("alerts="):
        pattern, sep, url = text[len("alerts=") :].rpartition("@")
        if not sep or not pattern:
            raise ValueError(f"expected alerts=PATTERN@URL, not {text!r}")
        return PrometheusAlertsProbe(check_plain_url(url), check_pattern(pattern))
    probe = parse_gate(text)
    if isinstance(probe, TcpProbe):
        raise ValueError("a TCP probe is a post-gate (it needs a host); use http:// or cmd:")
    _refuse_template(probe)
    return probe


def check_plain_url(text: str) -> str:
    if "{" in text:
        raise ValueError(f"a pre-gate runs once per batch: no {{fields}} in {text!r}")
    return check_url(text)


def check_pattern(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"bad regular expression {text!r}: {exc}") from None
    return text


def _refuse_template(probe: Probe) -> None:
    values = [probe.url] if isinstance(probe, HttpProbe) else []
    if isinstance(probe, CommandProbe):
        values = list(probe.argv)
    if any("{" in value for value in values):
        raise ValueError("a pre-gate runs once per batch, not per host: no {fields} in it")


# --- the file -----------------------------------------------------------------------------------


def load_spec(path: str | Path) -> RolloutSpec:
    source = Path(path)
    data = load_yaml(read_text(source), str(source))
    if data is None:
        data = MarkedMap()
        data.key_lines = {}
    if not isinstance(data, MarkedMap):
        raise FileFormatError(str(source), "a rollout spec must be a YAML mapping", 1)
    return _SpecReader(str(source), source.parent).read(data)


class _SpecReader(MarkedReader):
    def __init__(self, path: str, base: Path) -> None:
        super().__init__(path)
        self.base = base

    def read(self, data: MarkedMap) -> RolloutSpec:
        self.check_keys(data, _TOP_KEYS, "the rollout spec")
        spec = RolloutSpec(path=self.path)
        changes: dict[str, Any] = {}
        if "inventory" in data:
            value = data["inventory"]
            if not isinstance(value, str) or not value:
                raise self.fail("inventory must be a file path", data.line_of("inventory"))
            changes["inventory"] = str(self.base / value)
        if "limit" in data:
            value = data["limit"]
            if not isinstance(value, str) or not value.strip():
                raise self.fail("limit must be a host pattern", data.line_of("limit"))
            changes["limit"] = value
        if "transport" in data:
            changes["transport"] = self.choice(data, "transport", ("ssh", "local"), "spec")
        if "interlock" in data:
            changes["interlock"] = self.value(data, "interlock", parse_argv, "spec")
        if "ledger_dir" in data:
            value = data["ledger_dir"]
            if not isinstance(value, str) or not value.startswith("/"):
                raise self.fail("ledger_dir must be an absolute path", data.line_of("ledger_dir"))
            changes["ledger_dir"] = value
        if "coordination" in data:
            from interlock.coordination.selection import check_coordination

            try:
                changes["coordination"] = check_coordination(str(data["coordination"]))
            except UsageError as exc:
                raise self.fail(str(exc), data.line_of("coordination")) from None
        changes["action"] = self.action(data)
        changes.update(self.schedule(data))
        changes["drain"] = self.drain(data)
        changes["pre_gates"] = self.pre_gates(data)
        changes["post_gates"] = self.post_gates(data)
        failures = self.mapping(data, "failures", _FAILURE_KEYS)
        if "budget" in failures:
            changes["failure_budget"] = self.value(failures, "budget", Amount.parse, "failures")
        if "on_failure" in failures:
            changes["on_failure"] = self.choice(
                failures, "on_failure", ("pause", "abort"), "failures"
            )
        return dataclasses.replace(spec, **changes)

    def action(self, data: MarkedMap) -> ActionSpec:
        section = self.mapping(data, "action", _ACTION_KEYS)
        kinds = [key for key in ("deferred", "restart", "command") if key in section]
        if len(kinds) > 1:
            raise self.fail(
                f"action: give one of deferred, restart, command (not {' and '.join(kinds)})",
                section.line_of(kinds[1]),
            )
        timeout = 120.0
        if "timeout" in section:
            timeout = float(self.value(section, "timeout", parse_period, "action"))
        if "check" in section and kinds != ["command"]:
            raise self.fail("action.check goes with action.command", section.line_of("check"))
        if "via" in section:
            raise self.fail(
                "action.via: write `deferred: ledger` or `restart: {services: [...], via: "
                "interlock}`",
                section.line_of("via"),
            )
        kind = kinds[0] if kinds else "deferred"
        reboot = self.reboot(section, kind)
        if kind == "deferred":
            via = section.get("deferred", "interlock")
            if via not in ("interlock", "ledger"):
                raise self.fail(
                    f"action.deferred must be interlock or ledger, not {via!r}",
                    section.line_of("deferred"),
                )
            action = ActionSpec("deferred", str(via), timeout=timeout)
            if reboot:
                try:
                    return with_reboot(action, **reboot)
                except ValueError as exc:
                    raise self.fail(f"action.reboot: {exc}", section.line_of("reboot")) from None
            return action
        if kind == "restart":
            raw = section["restart"]
            via = "service"
            if isinstance(raw, MarkedMap):
                self.check_keys(raw, ("services", "via"), "action.restart")
                if "via" in raw:
                    via = self.choice(raw, "via", ("service", "interlock"), "action.restart")
                raw = raw.get("services")
            names = [raw] if isinstance(raw, str) else raw
            if not isinstance(names, list):
                raise self.fail(
                    "action.restart must list service names", section.line_of("restart")
                )
            try:
                services = check_services(names)
            except ValueError as exc:
                raise self.fail(f"action.restart: {exc}", section.line_of("restart")) from None
            return ActionSpec("restart", via, services=services, timeout=timeout)
        argv = self.value(section, "command", parse_argv, "action")
        check = self.value(section, "check", parse_argv, "action") if "check" in section else None
        return ActionSpec("command", "", argv=argv, check=check, timeout=timeout)

    def reboot(self, section: MarkedMap, kind: str) -> dict[str, Any]:
        given = [key for key in ("reboot", "reboot_command", "reboot_timeout") if key in section]
        if not given:
            return {}
        if "reboot" not in section:
            raise self.fail(f"action.{given[0]} goes with action.reboot", section.line_of(given[0]))
        if kind != "deferred":
            raise self.fail(
                f"action.reboot replaces deferred restarts: it does not go with action.{kind}",
                section.line_of("reboot"),
            )
        when = section["reboot"]
        if when is True:
            when = "needed"
        if when not in WHEN:
            raise self.fail(
                f"action.reboot must be needed or always, not {when!r}", section.line_of("reboot")
            )
        options: dict[str, Any] = {"when": when}
        if "reboot_command" in section:
            options["argv"] = self.value(section, "reboot_command", parse_argv, "action")
        if "reboot_timeout" in section:
            options["timeout"] = self.value(section, "reboot_timeout", parse_duration, "action")
        return options

    def schedule(self, data: MarkedMap) -> dict[str, Any]:
        section = self.mapping(data, "schedule", _SCHEDULE_KEYS)
        where = "schedule"
        result: dict[str, Any] = {}
        schedule = Schedule()
        if "canary" in section:
            schedule = dataclasses.replace(
                schedule, canary=self.value(section, "canary", Amount.parse, where)
            )
        if "waves" in section:
            waves = section["waves"]
            if not isinstance(waves, MarkedSeq) or not waves:
                raise self.fail(
                    "schedule.waves must be a list like [25%, 50%, 100%]", section.line_of("waves")
                )
            parsed: list[Amount] = []
            for item, line in zip(waves, waves.item_lines, strict=True):
                try:
                    parsed.append(Amount.parse(item))
                except ValueError as exc:
                    raise self.fail(f"schedule.waves: {exc}", line) from None
            try:
                check_waves(parsed)
            except ValueError as exc:
                raise self.fail(f"schedule.waves: {exc}", section.line_of("waves")) from None
            schedule = dataclasses.replace(schedule, waves=tuple(parsed))
        if "batch_size" in section:
            size = self.value(section, "batch_size", Amount.parse, where)
            assert isinstance(size, Amount)
            if size.value == 0:
                raise self.fail(
                    "schedule.batch_size must be at least 1", section.line_of("batch_size")
                )
            schedule = dataclasses.replace(schedule, batch_size=size)
        limits: list[GroupLimit] = []
        if "max_unavailable" in section:
            table = section["max_unavailable"]
            if not isinstance(table, MarkedMap):
                raise self.fail(
                    "schedule.max_unavailable must map labels to amounts, like {role: 1}",
                    section.line_of("max_unavailable"),
                )
            for key, amount in table.items():
                try:
                    limits.append(parse_limit(f"{key}={amount}"))
                except ValueError as exc:
                    raise self.fail(
                        f"schedule.max_unavailable: {exc}", table.line_of(key)
                    ) from None
        if "quorum" in section:
            labels = section["quorum"]
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list):
                raise self.fail("schedule.quorum must list label names", section.line_of("quorum"))
            for label in labels:
                try:
                    limits.append(GroupLimit(check_label(str(label)), Amount(1), quorum=True))
                except ValueError as exc:
                    raise self.fail(f"schedule.quorum: {exc}", section.line_of("quorum")) from None
        schedule = dataclasses.replace(schedule, limits=tuple(limits))
        result["schedule"] = schedule
        if "concurrency" in section:
            value = section["concurrency"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.fail(
                    "schedule.concurrency must be a whole number ≥ 1",
                    section.line_of("concurrency"),
                )
            result["concurrency"] = value
        for key in ("stagger", "jitter"):
            if key in section:
                result[key] = self.value(section, key, parse_duration, where)
        if "windows" in section:
            result["windows"] = self.windows(section)
        return result

    def windows(self, section: MarkedMap) -> tuple[MaintenanceWindow, ...]:
        items = section["windows"]
        if isinstance(items, MarkedMap):
            items = [items]
        if not isinstance(items, list) or not items:
            raise self.fail("schedule.windows must list windows", section.line_of("windows"))
        windows: list[MaintenanceWindow] = []
        for item in items:
            if isinstance(item, str):
                try:
                    windows.append(parse_window(item))
                except WindowError as exc:
                    raise self.fail(
                        f"schedule.windows: {exc}", section.line_of("windows")
                    ) from None
                continue
            if not isinstance(item, MarkedMap):
                raise self.fail(
                    "schedule.windows: each window is a mapping", section.line_of("windows")
                )
            self.check_keys(item, _WINDOW_KEYS, "window")
            for key in ("days", "start", "end"):
                if key not in item:
                    raise self.fail(f"window: missing {key}", item.line)
            try:
                days = item["days"]
                windows.append(
                    MaintenanceWindow(
                        days=parse_days(",".join(days) if isinstance(days, list) else str(days)),
                        start=parse_clock(str(item["start"])),
                        end=parse_clock(str(item["end"])),
                        timezone=check_timezone(str(item.get("timezone", "UTC"))),
                    )
                )
            except WindowError as exc:
                raise self.fail(f"window: {exc}", item.line) from None
        return tuple(windows)

    def drain(self, data: MarkedMap) -> DrainSpec:
        value = data.get("drain")
        if isinstance(value, bool):
            return DrainSpec(enabled=value)
        section = self.mapping(data, "drain", _DRAIN_KEYS)
        if "drain" not in data:
            return DrainSpec()
        spec = DrainSpec(enabled=True)
        changes: dict[str, Any] = {}
        if "enabled" in section:
            if not isinstance(section["enabled"], bool):
                raise self.fail("drain.enabled must be true or false", section.line_of("enabled"))
            changes["enabled"] = section["enabled"]
        if "port" in section:
            port = section["port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise self.fail("drain.port must be a TCP port", section.line_of("port"))
            changes["port"] = port
        if "timeout" in section:
            changes["timeout"] = self.value(section, "timeout", parse_duration, "drain")
        if "on_timeout" in section:
            changes["on_timeout"] = self.choice(
                section, "on_timeout", ("fail", "force", "continue"), "drain"
            )
        if "on_failure" in section:
            changes["on_failure"] = self.choice(
                section, "on_failure", ("enable", "leave-drained"), "drain"
            )
        return dataclasses.replace(spec, **changes)

    def probe(self, item: object, line: int, *, pre: bool) -> Probe:
        if not isinstance(item, MarkedMap):
            if isinstance(item, str):
                try:
                    return parse_pre_gate(item) if pre else parse_gate(item)
                except ValueError as exc:
                    raise self.fail(str(exc), line) from None
            raise self.fail("a probe is a mapping like {http: URL} or a string", line)
        kinds = [key for key in _PROBE_KEYS if key in item]
        if len(kinds) != 1:
            raise self.fail("a probe needs exactly one of " + ", ".join(_PROBE_KEYS), item.line)
        kind = kinds[0]
        self.check_keys(item, _PROBE_KEYS[kind], f"{kind} probe")
        if kind in ("rabbitmq", "prometheus") and not pre:
            raise self.fail(f"a {kind} check is a pre-gate, not a post-gate", item.line)
        if kind == "tcp" and pre:
            raise self.fail("a tcp probe is a post-gate (it needs a host)", item.line)
        if kind == "command" and "host" in item and not pre:
            raise self.fail(
                "a post-gate command runs on the host itself: drop host", item.line_of("host")
            )
        timeout = 0.0
        if "timeout" in item:
            timeout = float(self.value(item, "timeout", parse_duration, kind))
        try:
            probe = self._probe(kind, item, pre)
        except ValueError as exc:
            raise self.fail(f"{kind} probe: {exc}", item.line_of(kind)) from None
        if timeout:
            probe = dataclasses.replace(probe, timeout=timeout)
        return probe

    def _probe(self, kind: str, item: MarkedMap, pre: bool) -> Probe:
        if kind == "http":
            url = check_plain_url(str(item["http"])) if pre else check_url(str(item["http"]))
            expect = item.get("expect", 200)
            codes = expect if isinstance(expect, list) else [expect]
            if not codes or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes):
                raise ValueError(f"expect must be HTTP status codes, not {expect!r}")
            contains = item.get("contains")
            if contains is not None and not isinstance(contains, str):
                raise ValueError("contains must be a string")
            return HttpProbe(url, tuple(codes), contains)
        if kind == "tcp":
            return parse_tcp(str(item["tcp"]))
        if kind == "command":
            argv = parse_argv(item["command"])
            host = item.get("host")
            if host is not None and not isinstance(host, str):
                raise ValueError("host must be an inventory host name")
            probe = CommandProbe(argv, host)
            if pre:
                _refuse_template(probe)
            else:
                for arg in argv:
                    check_template(arg)
            return probe
        if kind == "rabbitmq":
            limit = item.get("max_messages")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError("max_messages must be a whole number ≥ 0")
            password_file = item.get("password_file")
            if password_file is not None:
                password_file = str(self.base / str(password_file))
            queues = item.get("queues")
            return RabbitQueuesProbe(
                check_plain_url(str(item["rabbitmq"])),
                limit,
                user=str(item.get("user", "guest")),
                password_file=password_file,
                vhost=None if item.get("vhost") is None else str(item["vhost"]),
                pattern=None if queues is None else check_pattern(str(queues)),
            )
        return PrometheusAlertsProbe(
            check_plain_url(str(item["prometheus"])), check_pattern(str(item.get("alert", ".*")))
        )

    def probes(self, section: MarkedMap, key: str, *, pre: bool) -> tuple[Probe, ...]:
        items = section[key]
        if not isinstance(items, MarkedSeq):
            raise self.fail(f"{key} must be a list of probes", section.line_of(key))
        return tuple(
            self.probe(item, line, pre=pre)
            for item, line in zip(items, items.item_lines, strict=True)
        )

    def pre_gates(self, data: MarkedMap) -> PreGates:
        raw = data.get("pre_gates")
        if isinstance(raw, MarkedSeq):
            holder = MarkedMap({"checks": raw})
            holder.line = raw.line
            holder.key_lines = {"checks": data.line_of("pre_gates")}
            return PreGates(probes=self.probes(holder, "checks", pre=True))
        section = self.mapping(data, "pre_gates", _PRE_KEYS)
        gates = PreGates()
        changes: dict[str, Any] = {}
        if "checks" in section:
            changes["probes"] = self.probes(section, "checks", pre=True)
        for key in ("interval", "timeout"):
            if key in section:
                changes[key] = self.value(section, key, parse_period, "pre_gates")
        return dataclasses.replace(gates, **changes)

    def post_gates(self, data: MarkedMap) -> PostGateSpec:
        section = self.mapping(data, "post_gates", _POST_KEYS)
        changes: dict[str, Any] = {}
        if "restarted" in section:
            if not isinstance(section["restarted"], bool):
                raise self.fail(
                    "post_gates.restarted must be true or false", section.line_of("restarted")
                )
            changes["restarted"] = section["restarted"]
        if "probes" in section:
            changes["probes"] = self.probes(section, "probes", pre=False)
        if "passes" in section:
            passes = section["passes"]
            if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
                raise self.fail(
                    "post_gates.passes must be a whole number ≥ 1", section.line_of("passes")
                )
            changes["passes"] = passes
        for key in ("interval", "deadline", "soak"):
            if key in section:
                parse = parse_duration if key == "soak" else parse_period
                changes[key] = self.value(section, key, parse, "post_gates")
        return dataclasses.replace(PostGateSpec(), **changes)


def check_waves(waves: Sequence[Amount]) -> None:
    """Waves are cumulative targets, so each must be larger than the one before when comparable."""
    for before, after in itertools.pairwise(waves):
        if before.percent == after.percent and after.value <= before.value:
            raise ValueError(
                f"waves are cumulative (hosts done so far): {after} after {before} would do nothing"
            )


# --- shared with the flags (interlock.rollout.options) ------------------------------------------


def with_reboot(
    action: ActionSpec,
    when: str,
    argv: tuple[str, ...] | None = None,
    timeout: float | None = None,
) -> ActionSpec:
    """The deferred-restart action with reboots: a host that needs one is rebooted instead."""
    if action.kind != "deferred":
        raise ValueError("a reboot replaces deferred restarts: it goes with the deferred action")
    if action.via != "interlock":
        raise ValueError(
            "after a reboot `interlock check` on the host clears what it paid: "
            "it needs the deferred action via interlock"
        )
    return dataclasses.replace(
        action,
        reboot=when,
        reboot_argv=argv or action.reboot_argv,
        reboot_timeout=action.reboot_timeout if timeout is None else timeout,
    )
