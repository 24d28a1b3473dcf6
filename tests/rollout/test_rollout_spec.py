"""The rollout spec: a YAML file and flags into frozen records; mistakes name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.errors import FileFormatError, UsageError
from interlock.fleet.inventory import Host
from interlock.rollout.options import apply_options
from interlock.rollout.plan import (
    CommandProbe,
    HttpProbe,
    PrometheusAlertsProbe,
    RabbitQueuesProbe,
    TcpProbe,
)
from interlock.rollout.planner import fill
from interlock.rollout.schedule import Amount, GroupLimit
from interlock.rollout.spec import RolloutSpec, load_spec, parse_duration

FULL = """\
limit: controllers
transport: local
action:
  restart: {services: [lab-api, cron.service], via: interlock}
  timeout: 90s
schedule:
  canary: 1
  waves: [25%, 50%, 100%]
  batch_size: 10
  concurrency: 5
  max_unavailable: {role: 1, "role:compute": 10%}
  quorum: [galera]
  stagger: 5s
  jitter: 1500ms
  windows:
    - {days: mon-fri, start: "22:00", end: "04:00", timezone: Europe/Berlin}
    - "sat,sun 08:00-20:00 UTC"
drain: {port: 8080, timeout: 1m, on_timeout: force, on_failure: leave-drained}
pre_gates:
  checks:
    - {http: "http://127.0.0.1:9090/-/ready"}
    - {rabbitmq: "http://127.0.0.1:15672", max_messages: 100, queues: "^nova", vhost: openstack}
    - {prometheus: "http://127.0.0.1:9090", alert: "Rabbit.*"}
    - {command: [rabbitmqctl, cluster_status], host: ctl1}
  interval: 10s
  timeout: 15m
post_gates:
  probes:
    - {http: "http://{address}:8080/health", expect: [200, 204], contains: ok}
    - {tcp: "{address}:22"}
    - {command: "test -e /run/{name}.ready"}
  passes: 3
  interval: 2s
  deadline: 3m
  soak: 30s
failures: {budget: 10%, on_failure: abort}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_full_spec_reads_into_records(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, FULL))
    assert spec.limit == "controllers"
    assert spec.transport == "local"
    assert spec.action.kind == "restart"
    assert spec.action.services == ("lab-api", "cron")
    assert spec.action.via == "interlock"
    assert spec.action.timeout == 90
    assert spec.schedule.canary == Amount(1)
    assert spec.schedule.waves == (Amount(25, True), Amount(50, True), Amount(100, True))
    assert spec.schedule.batch_size == Amount(10)
    assert spec.schedule.limits == (
        GroupLimit("role", Amount(1)),
        GroupLimit("role", Amount(10, True), value="compute"),
        GroupLimit("galera", Amount(1), quorum=True),
    )
    assert (spec.concurrency, spec.stagger, spec.jitter) == (5, 5.0, 1.5)
    assert [w.describe() for w in spec.windows] == [
        "mon-fri 22:00-04:00 Europe/Berlin",
        "sat-sun 08:00-20:00 UTC",
    ]
    assert spec.drain.enabled and spec.drain.port == 8080 and spec.drain.timeout == 60
    assert (spec.drain.on_timeout, spec.drain.on_failure) == ("force", "leave-drained")
    assert [type(p) for p in spec.pre_gates.probes] == [
        HttpProbe,
        RabbitQueuesProbe,
        PrometheusAlertsProbe,
        CommandProbe,
    ]
    rabbit = spec.pre_gates.probes[1]
    assert isinstance(rabbit, RabbitQueuesProbe)
    assert (rabbit.max_messages, rabbit.pattern, rabbit.vhost) == (100, "^nova", "openstack")
    assert (spec.pre_gates.interval, spec.pre_gates.timeout) == (10, 900)
    post = spec.post_gates
    assert post.probes[0] == HttpProbe("http://{address}:8080/health", (200, 204), "ok")
    assert post.probes[1] == TcpProbe("{address}", 22)
    assert post.probes[2] == CommandProbe(("test", "-e", "/run/{name}.ready"))
    assert (post.passes, post.interval, post.deadline, post.soak) == (3, 2, 180, 30)
    assert spec.failure_budget == Amount(10, True)
    assert spec.on_failure == "abort"


def test_an_empty_spec_is_the_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, ""))
    assert spec == RolloutSpec(path=str(tmp_path / "spec.yaml"))
    assert spec.action.kind == "deferred" and spec.action.via == "interlock"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("limit: x\nschedul: {}\n", 2, "unknown key 'schedul'"),
        ("schedule:\n  canary: 1\n  waves: [25%, 10%]\n", 3, "cumulative"),
        ("schedule:\n  waves: [25%, lots]\n", 2, "expected a count"),
        ("schedule:\n  max_unavailable:\n    role: 1\n    az: 0\n", 4, "never let az proceed"),
        ("schedule:\n  stagger: soon\n", 2, "duration"),
        (
            "schedule:\n  windows:\n    - {days: mon, start: '25:00', end: '01:00'}\n",
            3,
            "no such time",
        ),
        ("action:\n  restart: [ok, 'bad name']\n", 2, "not a valid service name"),
        ("action:\n  restart: [x]\n  command: y\n", 3, "give one of"),
        ("action:\n  check: [true]\n", 2, "goes with action.command"),
        ("drain: {on_failure: keep}\n", 1, "enable, leave-drained"),
        ("post_gates:\n  probes:\n    - {http: 'http://{adress}:8080/'}\n", 3, "unknown field"),
        ("post_gates:\n  probes:\n    - {prometheus: 'http://x'}\n", 3, "is a pre-gate"),
        ("pre_gates:\n  - {http: 'http://{address}/'}\n", 2, "once per batch"),
        ("pre_gates:\n  - {tcp: '1.2.3.4:5'}\n", 2, "post-gate"),
        ("failures: {budget: -1}\n", 1, "expected a count"),
        ("a: [1\n", 2, "not valid YAML"),
        ("limit: a\nlimit: b\n", 2, "duplicate key"),
    ],
)
def test_mistakes_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileFormatError) as caught:
        load_spec(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)


def test_flags_override_the_file(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, FULL))
    flags: dict[str, object] = {
        "--command": "echo {name}",
        "--check": "test -e /tmp/{name}",
        "--canary": "2",
        "--waves": "50%,100%",
        "--max-unavailable": ["role=2"],
        "--drain": False,
        "--gate": ["tcp://{address}:8080"],
        "--soak": "0",
        "--failure-budget": "1",
    }
    changed = apply_options(spec, flags)
    assert changed.action.kind == "command"
    assert changed.action.argv == ("echo", "{name}")
    assert changed.action.check == ("test", "-e", "/tmp/{name}")
    assert changed.schedule.canary == Amount(2)
    assert changed.schedule.waves == (Amount(50, True), Amount(100, True))
    # The flag replaces the limits of the label it names and keeps the quorum.
    assert changed.schedule.limits == (
        GroupLimit("galera", Amount(1), quorum=True),
        GroupLimit("role", Amount(2)),
    )
    assert not changed.drain.enabled
    assert changed.post_gates.probes == (TcpProbe("{address}", 8080),)
    assert changed.post_gates.soak == 0
    assert changed.failure_budget == Amount(1)
    assert changed.post_gates.passes == 3  # untouched


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"--canary": "many"}, "--canary:"),
        ({"--waves": "50%,20%"}, "--waves:"),
        ({"--max-unavailable": ["role"]}, "--max-unavailable:"),
        ({"--restart": ["a b"]}, "--restart:"),
        ({"--restart": ["x"], "--command": "y"}, "give one action"),
        ({"--check": "true"}, "--check goes with --command"),
        ({"--gate": ["ftp://x"]}, "--gate:"),
        ({"--pre-gate": ["rabbitmq=lots@http://x"]}, "--pre-gate:"),
        ({"--window": ["mon 22:00"]}, "--window:"),
        ({"--soak": "a while"}, "--soak:"),
    ],
)
def test_bad_flags_name_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        apply_options(RolloutSpec(), flags)


def test_pre_gate_flag_forms() -> None:
    spec = apply_options(
        RolloutSpec(),
        {
            "--pre-gate": [
                "rabbitmq=500@http://127.0.0.1:15672",
                "alerts=Galera.*|Rabbit.*@http://127.0.0.1:9090",
                "cmd:true",
            ]
        },
    )
    assert spec.pre_gates.probes == (
        RabbitQueuesProbe("http://127.0.0.1:15672", 500),
        PrometheusAlertsProbe("http://127.0.0.1:9090", "Galera.*|Rabbit.*"),
        CommandProbe(("true",)),
    )


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(3) == 3
    assert parse_duration("2.5") == 2.5
    for bad in ("-1", "1d", "m5", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_templates_fill_known_fields_and_leave_shell_braces() -> None:
    host = Host(name="ctl1", address="10.0.0.11", labels={"az": "az1"})
    assert fill("http://{address}:8080/{name}?az={labels[az]}", host) == (
        "http://10.0.0.11:8080/ctl1?az=az1"
    )
    assert fill("echo ${HOME} {name} | awk '{print $1}'", host) == (
        "echo ${HOME} ctl1 | awk '{print $1}'"
    )
    with pytest.raises(UsageError, match="no label 'rack'"):
        fill("{labels[rack]}", host)
