"""The rollout options of the command line, in one table.

Each entry says how the option is spelled for argparse (`rollout plan` and `rollout run` are built
from the table) and what its value changes in the `RolloutSpec`: the field it overrides and the
converter from the command-line text. A converter raises ValueError; the option's flag is put in
front of the message (`--canary: expected a count…`), as for every mistake in a flag.

A few options only make sense together (one action; --check with --command; the reboot options;
--max-unavailable and --quorum sharing the spec's limits). Their entries name a rule instead of a
field: a small function that applies the whole group, once, where its first option stands in the
table, when any of its options is given.

Adding an option is adding an entry; its `sample` is a valid use, which the tests give to prove
that it reaches the spec.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, TypeVar

from interlock.errors import UsageError
from interlock.rollout.schedule import Amount, GroupLimit
from interlock.rollout.spec import (
    ActionSpec,
    RolloutSpec,
    check_label,
    check_services,
    check_waves,
    parse_argv,
    parse_duration,
    parse_gate,
    parse_limit,
    parse_period,
    parse_pre_gate,
    with_reboot,
)
from interlock.rollout.window import parse_window

T = TypeVar("T")

# The parts of `--help` the options are shown in, in this order ("": the command's own options).
TARGET = ""
ACTION = "action (one of; default: --deferred interlock)"
REBOOTS = "reboots (with the deferred action)"
SCHEDULE = "schedule"
LOAD_BALANCERS = "load balancers"
GATES = "gates"
FAILURES = "failures"


# --- converters: command-line value -> spec value; ValueError for a bad one ----------------------


def as_given(value: T) -> T:
    """For values argparse has already checked (a choice, a switch) or any text (a pattern)."""
    return value


def each(parse: Callable[[str], T]) -> Callable[[Sequence[str]], tuple[T, ...]]:
    """A repeated option's converter, from the converter of one of its values."""

    def parse_all(texts: Sequence[str]) -> tuple[T, ...]:
        return tuple(parse(text) for text in texts)

    return parse_all


def parse_waves(text: str) -> tuple[Amount, ...]:
    waves = tuple(Amount.parse(part) for part in text.split(","))
    check_waves(waves)
    return waves


def parse_batch_size(text: str) -> Amount:
    size = Amount.parse(text)
    if size.value == 0:
        raise ValueError("must be at least 1")
    return size


def at_least_one(number: int) -> int:
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def tcp_port(number: int) -> int:
    if not 0 < number < 65536:
        raise ValueError("not a TCP port")
    return number


def quorum_limit(label: str) -> GroupLimit:
    """A quorum label: none of its groups may lose more than one host at a time."""
    return GroupLimit(check_label(label), Amount(1), quorum=True)


# --- the given options --------------------------------------------------------------------------


class Given:
    """The table's options on one command line, by flag. A value is converted when a rule or the
    table asks for it, so a bad value is reported in the same order the spec is changed."""

    def __init__(self, values: Mapping[str, object]) -> None:
        unknown = sorted(set(values) - set(BY_FLAG))
        if unknown:
            raise KeyError(f"not rollout options: {', '.join(unknown)}")
        self._values = {flag: value for flag, value in values.items() if value is not None}

    def __contains__(self, flag: object) -> bool:
        return flag in self._values

    def value(self, flag: str) -> Any:
        """The option's value for the spec, None when it was not given."""
        if flag not in self._values:
            return None
        return BY_FLAG[flag].convert(self._values[flag])


# --- the rules of the options that go together --------------------------------------------------

Rule = Callable[[RolloutSpec, Given], RolloutSpec]


def action_rule(spec: RolloutSpec, given: Given) -> RolloutSpec:
    """One action (--deferred, --restart or --command) replaces the spec's, keeping its timeout;
    --check goes with the command action."""
    chosen = [flag for flag in ("--deferred", "--restart", "--command") if flag in given]
    if len(chosen) > 1:
        raise UsageError(f"give one action: {' or '.join(chosen)}")
    action = spec.action
    if "--deferred" in given:
        action = ActionSpec("deferred", given.value("--deferred"), timeout=action.timeout)
    elif "--restart" in given:
        services = given.value("--restart")
        action = ActionSpec("restart", "service", services=services, timeout=action.timeout)
    elif "--command" in given:
        argv = given.value("--command")
        action = ActionSpec("command", "", argv=argv, timeout=action.timeout)
    if "--check" in given:
        if action.kind != "command":
            raise UsageError("--check goes with --command")
        action = dataclasses.replace(action, check=given.value("--check"))
    return dataclasses.replace(spec, action=action)


def reboot_rule(spec: RolloutSpec, given: Given) -> RolloutSpec:
    """--reboot (or the spec's reboot) turns the deferred action into reboots; the reboot
    command and timeout only go with it."""
    action = spec.action
    if "--reboot" not in given and action.reboot is None:
        raise UsageError("--reboot-command and --reboot-timeout go with --reboot")
    argv = given.value("--reboot-command")
    timeout = given.value("--reboot-timeout")
    when = given.value("--reboot") or action.reboot or "needed"
    try:
        action = with_reboot(action, when, argv, timeout)
    except ValueError as exc:
        raise UsageError(f"--reboot: {exc}") from None
    return dataclasses.replace(spec, action=action)


def limits_rule(spec: RolloutSpec, given: Given) -> RolloutSpec:
    """--max-unavailable and --quorum replace the spec's limits for the labels they name and keep
    the others."""
    limits: list[GroupLimit] = [
        *(given.value("--max-unavailable") or ()),
        *(given.value("--quorum") or ()),
    ]
    named = {limit.label for limit in limits}
    kept = [limit for limit in spec.schedule.limits if limit.label not in named]
    schedule = dataclasses.replace(spec.schedule, limits=tuple(kept + limits))
    return dataclasses.replace(spec, schedule=schedule)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One rollout option: its argparse spelling and what its value changes in the spec."""

    flag: str  # --canary; its argparse dest is canary
    section: str  # its part of --help
    help: str | None
    _: KW_ONLY
    # What it changes: the spec field at `path` (a field of a field: several names) set to
    # parse(value), or, for options that go together, the rule that applies their group.
    path: tuple[str, ...] = ()
    rule: Rule | None = None
    parse: Callable[[Any], object] = as_given
    # A valid use of it on a command line, e.g. ("--canary", "1"), and what that use needs with
    # it (--check: a --command): the tests give it and expect the spec to change.
    sample: tuple[str, ...]
    needs: tuple[str, ...] = ()
    # argparse details
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    number: bool = False  # a whole number (argparse checks it: type=int)
    repeat: bool = False  # given again adds a value (action=append); parse gets them all
    negative: str | None = None  # a switch: --drain sets True, its --no-drain False
    const: str | None = None  # the value may be left out (nargs="?"): then it is this

    def __post_init__(self) -> None:
        if bool(self.path) == (self.rule is not None):
            raise ValueError(f"{self.flag}: give either the spec field it sets or its rule")

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag,) if self.negative is None else (self.flag, self.negative)

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        if self.negative is not None:
            parser.add_argument(self.flag, action="store_true", default=None, help=self.help)
            parser.add_argument(self.negative, dest=self.dest, action="store_false")
            return
        details: dict[str, Any] = {"metavar": self.metavar, "help": self.help}
        if self.choices is not None:
            details["choices"] = self.choices
        if self.number:
            details["type"] = int
        if self.repeat:
            details["action"] = "append"
        if self.const is not None:
            details.update(nargs="?", const=self.const)
        parser.add_argument(self.flag, **details)

    def convert(self, value: object) -> Any:
        """The value for the spec; a bad one is a UsageError that names the flag."""
        if self.repeat:
            if not isinstance(value, list | tuple):
                raise TypeError(f"{self.flag} is repeated: give its values as a list")
            value = tuple(value)
        try:
            return self.parse(value)
        except ValueError as exc:
            raise UsageError(f"{self.flag}: {exc}") from None


OPTIONS: tuple[Option, ...] = (
    Option(
        "--limit",
        TARGET,
        "host pattern: name, group, glob, a:b, a:&b, a:!b",
        path=("limit",),
        sample=("--limit", "controllers"),
    ),
    Option(
        "--transport",
        TARGET,
        "reach hosts over SSH (default), or run every host's commands on this machine",
        path=("transport",),
        choices=("ssh", "local"),
        sample=("--transport", "local"),
    ),
    Option(
        "--deferred",
        ACTION,
        "apply each host's deferred restarts: with interlock on the host, or from its ledger for "
        "hosts without it",
        rule=action_rule,
        choices=("interlock", "ledger"),
        sample=("--deferred", "ledger"),
    ),
    Option(
        "--restart",
        ACTION,
        "restart (repeat)",
        rule=action_rule,
        parse=check_services,
        metavar="SERVICE",
        repeat=True,
        sample=("--restart", "cron"),
    ),
    Option(
        "--command",
        ACTION,
        "run CMD on each host (split like sh)",
        rule=action_rule,
        parse=parse_argv,
        metavar="CMD",
        sample=("--command", "systemctl restart cron"),
    ),
    Option(
        "--check",
        ACTION,
        "with --command: exit 0 = already done",
        rule=action_rule,
        parse=parse_argv,
        needs=("--command", "make"),
        metavar="CMD",
        sample=("--check", "test -e /run/done"),
    ),
    Option(
        "--action-timeout",
        ACTION,
        "per action (default 2m)",
        path=("action", "timeout"),
        parse=parse_period,
        metavar="DURATION",
        sample=("--action-timeout", "90s"),
    ),
    Option(
        "--interlock",
        ACTION,
        "interlock on the hosts (default: interlock)",
        path=("interlock",),
        parse=parse_argv,
        metavar="CMD",
        sample=("--interlock", "sudo interlock"),
    ),
    Option(
        "--reboot",
        REBOOTS,
        "reboot the hosts that need it (reboot-required, a newer kernel) instead of restarting "
        "their deferred services; `always`: every host",
        rule=reboot_rule,
        choices=("needed", "always"),
        const="needed",
        sample=("--reboot",),
    ),
    Option(
        "--reboot-command",
        REBOOTS,
        "how a host reboots (default: systemctl reboot)",
        rule=reboot_rule,
        parse=parse_argv,
        needs=("--reboot",),
        metavar="CMD",
        sample=("--reboot-command", "lab-reboot"),
    ),
    Option(
        "--reboot-timeout",
        REBOOTS,
        "to come back from a new boot (default 10m)",
        rule=reboot_rule,
        parse=parse_duration,
        needs=("--reboot",),
        metavar="DURATION",
        sample=("--reboot-timeout", "5m"),
    ),
    Option(
        "--canary",
        SCHEDULE,
        "hosts in the first batch",
        path=("schedule", "canary"),
        parse=Amount.parse,
        metavar="N|P%",
        sample=("--canary", "1"),
    ),
    Option(
        "--waves",
        SCHEDULE,
        "cumulative targets, e.g. 25%%,50%%,100%%",
        path=("schedule", "waves"),
        parse=parse_waves,
        metavar="LIST",
        sample=("--waves", "50%,100%"),
    ),
    Option(
        "--batch-size",
        SCHEDULE,
        "batches after the waves (default 1)",
        path=("schedule", "batch_size"),
        parse=parse_batch_size,
        metavar="N|P%",
        sample=("--batch-size", "10%"),
    ),
    Option(
        "--concurrency",
        SCHEDULE,
        "hosts at once in a batch",
        path=("concurrency",),
        parse=at_least_one,
        metavar="N",
        number=True,
        sample=("--concurrency", "4"),
    ),
    Option(
        "--max-unavailable",
        SCHEDULE,
        "per group of a label, e.g. role=1, az=25%%, role:compute=5 (repeat)",
        rule=limits_rule,
        parse=each(parse_limit),
        metavar="LABEL[:VALUE]=N|P%",
        repeat=True,
        sample=("--max-unavailable", "role=1"),
    ),
    Option(
        "--quorum",
        SCHEDULE,
        "groups lose ≤ 1 (repeat)",
        rule=limits_rule,
        parse=each(quorum_limit),
        metavar="LABEL",
        repeat=True,
        sample=("--quorum", "galera"),
    ),
    Option(
        "--stagger",
        SCHEDULE,
        "between host starts in a batch",
        path=("stagger",),
        parse=parse_duration,
        metavar="DURATION",
        sample=("--stagger", "5s"),
    ),
    Option(
        "--jitter",
        SCHEDULE,
        "random extra stagger, up to this",
        path=("jitter",),
        parse=parse_duration,
        metavar="DURATION",
        sample=("--jitter", "2s"),
    ),
    Option(
        "--window",
        SCHEDULE,
        "maintenance window, e.g. 'mon-fri 22:00-04:00 Europe/Berlin' (repeat)",
        path=("windows",),
        parse=each(parse_window),
        metavar="'DAYS HH:MM-HH:MM [TZ]'",
        repeat=True,
        sample=("--window", "mon-fri 22:00-04:00 Europe/Berlin"),
    ),
    Option(
        "--drain",
        LOAD_BALANCERS,
        "drain the host's haproxy servers around the action",
        path=("drain", "enabled"),
        negative="--no-drain",
        sample=("--drain",),
    ),
    Option(
        "--drain-port",
        LOAD_BALANCERS,
        "only servers on this port",
        path=("drain", "port"),
        parse=tcp_port,
        metavar="PORT",
        number=True,
        sample=("--drain-port", "8080"),
    ),
    Option(
        "--drain-timeout",
        LOAD_BALANCERS,
        "wait for sessions (default 30s)",
        path=("drain", "timeout"),
        parse=parse_duration,
        metavar="DURATION",
        sample=("--drain-timeout", "1m"),
    ),
    Option(
        "--on-drain-timeout",
        LOAD_BALANCERS,
        None,
        path=("drain", "on_timeout"),
        choices=("fail", "force", "continue"),
        sample=("--on-drain-timeout", "force"),
    ),
    Option(
        "--on-failure-backend",
        LOAD_BALANCERS,
        "cleanup of a failed host: re-enable its servers (default) or leave them drained",
        path=("drain", "on_failure"),
        choices=("enable", "leave-drained"),
        sample=("--on-failure-backend", "leave-drained"),
    ),
    Option(
        "--gate",
        GATES,
        "post-gate: http://{address}:8080/health, tcp://{address}:22, cmd:COMMAND (repeat)",
        path=("post_gates", "probes"),
        parse=each(parse_gate),
        metavar="PROBE",
        repeat=True,
        sample=("--gate", "http://{address}:8080/health"),
    ),
    Option(
        "--gate-passes",
        GATES,
        "in a row (default 1)",
        path=("post_gates", "passes"),
        parse=at_least_one,
        metavar="N",
        number=True,
        sample=("--gate-passes", "3"),
    ),
    Option(
        "--gate-interval",
        GATES,
        "between rounds (default 1s)",
        path=("post_gates", "interval"),
        parse=parse_period,
        metavar="DURATION",
        sample=("--gate-interval", "5s"),
    ),
    Option(
        "--deadline",
        GATES,
        "for each post-gate (default 2m)",
        path=("post_gates", "deadline"),
        parse=parse_period,
        metavar="DURATION",
        sample=("--deadline", "5m"),
    ),
    Option(
        "--soak",
        GATES,
        "healthy for this long after the gates",
        path=("post_gates", "soak"),
        parse=parse_duration,
        metavar="DURATION",
        sample=("--soak", "10s"),
    ),
    Option(
        "--restarted-gate",
        GATES,
        "check the services really restarted (default for restarts)",
        path=("post_gates", "restarted"),
        negative="--no-restarted-gate",
        sample=("--no-restarted-gate",),
    ),
    Option(
        "--pre-gate",
        GATES,
        "before each batch: http://…, cmd:COMMAND, rabbitmq=MAX@URL, alerts=REGEX@URL",
        path=("pre_gates", "probes"),
        parse=each(parse_pre_gate),
        metavar="CHECK",
        repeat=True,
        sample=("--pre-gate", "rabbitmq=500@http://127.0.0.1:15672"),
    ),
    Option(
        "--pre-gate-timeout",
        GATES,
        "(default 10m)",
        path=("pre_gates", "timeout"),
        parse=parse_period,
        metavar="DURATION",
        sample=("--pre-gate-timeout", "5m"),
    ),
    Option(
        "--failure-budget",
        FAILURES,
        "failed hosts allowed (default 0)",
        path=("failure_budget",),
        parse=Amount.parse,
        metavar="N|P%",
        sample=("--failure-budget", "1"),
    ),
    Option(
        "--on-failure",
        FAILURES,
        "over budget (default pause)",
        path=("on_failure",),
        choices=("pause", "abort"),
        sample=("--on-failure", "abort"),
    ),
)
BY_FLAG: dict[str, Option] = {option.flag: option for option in OPTIONS}


# --- using the table ------------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """The table's options on a rollout command, each section an argument group of --help."""
    sections: dict[str, argparse._ActionsContainer] = {TARGET: parser}
    for option in OPTIONS:
        if option.section not in sections:
            sections[option.section] = parser.add_argument_group(option.section)
        option.add_to(sections[option.section])


def options_given(args: argparse.Namespace) -> dict[str, object]:
    """The table's options in a parsed command line, by flag (None: not given)."""
    return {option.flag: getattr(args, option.dest) for option in OPTIONS}


def apply_options(spec: RolloutSpec, values: Mapping[str, object]) -> RolloutSpec:
    """The spec with the command line's choices on top; a bad one is a UsageError naming its flag.

    `values` maps flags to what argparse makes of them: text, a number, True/False for a switch,
    a list for a repeated option; None or no entry: not given."""
    given = Given(values)
    rules_seen: list[Rule] = []
    for option in OPTIONS:
        if option.rule is None:
            if option.flag in given:
                spec = _replace_at(spec, option.path, given.value(option.flag))
        elif option.rule not in rules_seen:
            rules_seen.append(option.rule)
            group = [other.flag for other in OPTIONS if other.rule is option.rule]
            if any(flag in given for flag in group):
                spec = option.rule(spec, given)
    return spec


def _replace_at(record: Any, path: Sequence[str], value: object) -> Any:
    """The frozen `record` with the field at `path` (a field of a field of …) set to `value`."""
    name, *inner = path
    if inner:
        value = _replace_at(getattr(record, name), inner, value)
    return dataclasses.replace(record, **{name: value})
