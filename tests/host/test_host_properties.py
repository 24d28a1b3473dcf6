"""Property-based tests: the gate never crashes or lies on stdout, the fast YAML reader agrees
with PyYAML or refuses, malformed files are reported (never raised), events round-trip."""

from __future__ import annotations

import contextlib
import io
import os
import string
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from host.gate_env import GATE_CODES, charm_policy, make_gate_env
from interlock.errors import FileFormatError
from interlock.host import gate, miniyaml
from interlock.host.ledger import DeferredEvent, Ledger, parse_event, render_event
from interlock.host.policy import load_policies, parse_policy

# -- the gate's argv ------------------------------------------------------------------------------

WORDS = [
    "--quiet", "--list", "--", "--force", "-q", "cron", "cron.service", "nginx", "memcached",
    "getty@tty1.service", "restart", "(restart)", "stop", "start", "(start)", "status", "reload",
    "force-reload", "try-restart", "force-stop", "upgrade", "stop start", "restart stop",
    "frobnicate", "2", "S", "2 3", "", " ", "(", "()", "((restart))", "../x", "a;b", "é",
]  # fmt: skip
ARG = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
ARGV = st.lists(ARG, max_size=6)

FALLBACK_POLICY = """\
blocked_actions:
  nginx: [restart]
fallback_actions:
  nginx:
    restart: [reload]
policy_requestor_name: web
policy_requestor_type: interlock
"""


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Config paths of gates with policies that block, fall back and are broken, per fail mode."""
    configs = {}
    for mode in ("deny", "allow", "uncertain"):
        env = make_gate_env(tmp_path_factory.mktemp(mode), on_policy_error=mode)
        env.write_policy("charm-ops.policy", charm_policy("ops", {"cron": ["restart", "stop"]}))
        env.write_policy("interlock-web.policy", FALLBACK_POLICY)
        env.write_policy("charm-broken.policy", "blocked_actions: [oops\n")
        configs[mode] = str(env.config_path)
    return configs


def _lists(argv: list[str]) -> bool:
    options = []
    for word in argv:
        if not word.startswith("--") or word == "--":
            break
        options.append(word)
    return "--list" in options


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV, mode=st.sampled_from(["deny", "allow", "uncertain"]))
@example(argv=["--quiet", "cron", "restart"], mode="deny")
@example(argv=["nginx", "restart", "2"], mode="allow")
@example(argv=["--list", "cron", "2"], mode="deny")
def test_gate_run_answers_only_documented_codes(
    gates: dict[str, str], argv: list[str], mode: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gate.run(list(argv), gates[mode])
    assert code in GATE_CODES
    if code == 106:
        assert out.getvalue() == "reload\n"
    elif code == 0 and _lists(argv):
        assert out.getvalue().endswith("\n")
    else:
        assert out.getvalue() == ""
    if "--quiet" in argv[:1]:
        assert err.getvalue() == ""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=ARGV)
def test_gate_executable_answers_only_documented_codes(
    gates: dict[str, str], argv: list[str]
) -> None:
    assume(all("\x00" not in word for word in argv))  # an exec argument cannot hold NUL
    script = Path(gates["deny"]).parent.parent.parent / "usr" / "sbin" / "policy-rc.d"
    result = subprocess.run(
        [str(script), *argv], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode in GATE_CODES, result.stderr
    if result.returncode == 106:
        assert result.stdout == "reload\n"
    elif not (result.returncode == 0 and _lists(argv)):
        assert result.stdout == ""
    assert "Traceback" not in result.stderr


# -- miniyaml against PyYAML ----------------------------------------------------------------------


def same(a: object, b: object) -> bool:
    """Equal values of equal types all the way down (1 == True is not good enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


NAME = st.text(string.ascii_lowercase + string.digits + "-_.@:", min_size=1, max_size=30).filter(
    lambda s: s[0] not in "-." and ".." not in s
)
ACTION = st.sampled_from(["restart", "stop", "try-restart", "start", "reload", "force-reload"])
# Anything a UTF-8 file can hold (every character but the surrogates).
FREE_TEXT = st.text(st.characters(codec="utf-8"), max_size=120)
SCALAR = st.one_of(
    FREE_TEXT,
    st.integers(min_value=-(2**63), max_value=2**63),
    st.booleans(),
    st.none(),
    st.sampled_from(["yes", "No", "~", "null", "0o17", "012", "1e3", "1_000", "0x1F", "12:30",
                     ".inf", "-.nan", "2021-04-23", "@x", "!x", "*a", "&b", "|", ">", "%"]),
)  # fmt: skip
POLICY_DATA = st.fixed_dictionaries(
    {
        "blocked_actions": st.dictionaries(NAME, st.lists(ACTION, max_size=4), max_size=6),
        "policy_requestor_name": NAME,
        "policy_requestor_type": st.sampled_from(["charm", "interlock", "ops"]),
    }
)
EVENT_DATA = st.fixed_dictionaries(
    {
        "action": ACTION,
        "policy_requestor_name": NAME,
        "policy_requestor_type": NAME,
        "reason": FREE_TEXT,
        "service": NAME,
        "timestamp": st.integers(min_value=0, max_value=2**40),
    }
)
NESTED = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(NAME | FREE_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
UNICODE_BREAKS = ("\x85", "\u2028", "\u2029")
# How the charms' PyYAML versions write files (block, flow leaves, all flow; any line width).
DUMP_OPTIONS = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, True, None]),
        "width": st.integers(min_value=20, max_value=200),
        "allow_unicode": st.booleans(),
        "sort_keys": st.booleans(),
    }
)
# Plus what nobody writes these files with: the reader may refuse those, never misread them.
ANY_DUMP_OPTIONS = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, True, None]),
        "width": st.integers(min_value=20, max_value=200),
        "allow_unicode": st.booleans(),
        "sort_keys": st.booleans(),
        "explicit_start": st.booleans(),
        "explicit_end": st.booleans(),
        "indent": st.integers(min_value=2, max_value=6),
    }
)


@settings(max_examples=400)
@given(data=st.one_of(POLICY_DATA, EVENT_DATA), options=DUMP_OPTIONS)
def test_miniyaml_reads_what_pyyaml_writes(
    data: dict[str, object], options: dict[str, object]
) -> None:
    text = yaml.safe_dump(data, **options)  # type: ignore[call-overload]
    try:
        mine = miniyaml.load(text)
    except miniyaml.UnsupportedYaml as exc:
        # The one refusal allowed: NEL/LS/PS written raw (allow_unicode), which fold in ways
        # PyYAML itself does not round-trip. The charms never write them raw.
        assert options["allow_unicode"] and any(c in text for c in UNICODE_BREAKS), exc
        return
    assert same(mine, yaml.safe_load(text)), text


@settings(max_examples=400)
@given(data=NESTED, options=ANY_DUMP_OPTIONS)
def test_miniyaml_equals_pyyaml_or_refuses_on_any_dumped_data(
    data: object, options: dict[str, object]
) -> None:
    text = yaml.safe_dump(data, **options)  # type: ignore[call-overload]
    _agrees_or_refuses(text)


YAMLISH = st.lists(
    st.sampled_from([*"ab c1:-[]{},#'\"\n\t\\&*!|>?%@`.~0x ", "\n  ", ": ", "- ", "---"]),
    max_size=40,
).map("".join)


@settings(max_examples=1500)
@given(text=st.one_of(YAMLISH, st.text(max_size=60)))
@example(text="a: b: c")
@example(text="- a\n- b: c")
@example(text="{a: [b, c], d: e}")
@example(text="a: 'x\n\n  y'")
@example(text='a: "x\\\n  y"')
@example(text="a:\n- b\n-\n- c")
@example(text="[a, b]: c")
@example(text="? a\n: b")
def test_miniyaml_equals_pyyaml_or_refuses_on_any_text(text: str) -> None:
    _agrees_or_refuses(text)


def _agrees_or_refuses(text: str) -> None:
    try:
        mine = miniyaml.load(text)
    except miniyaml.YamlError:
        return  # refusing (and, for valid YAML, falling back to PyYAML) is always allowed
    try:
        theirs = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AssertionError(f"miniyaml accepted invalid YAML {text!r} as {mine!r}") from exc
    assert same(mine, theirs), f"{text!r}: miniyaml {mine!r} != PyYAML {theirs!r}"


# -- malformed files are reported, never raised --------------------------------------------------

VALID_POLICY = (
    "# Managed by juju\nblocked_actions:\n  cron: [restart, stop, try-restart]\n"
    "  nginx:\n  - restart\npolicy_requestor_name: ops\npolicy_requestor_type: charm\n"
)
VALID_EVENT = (
    "{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm,\n"
    "  reason: Package update, service: openvswitch-switch, timestamp: 1619175335}\n"
)
WRONG_TYPES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), NAME),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAME, inner, max_size=3),
    max_leaves=8,
)
MALFORMED = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=0, max_value=len(VALID_POLICY)).map(
        lambda n: VALID_POLICY[:n].encode()
    ),
    st.integers(min_value=0, max_value=len(VALID_EVENT)).map(lambda n: VALID_EVENT[:n].encode()),
    st.dictionaries(
        st.sampled_from(
            ["blocked_actions", "policy_requestor_name", "policy_requestor_type",
             "fallback_actions", "action", "service", "reason", "timestamp"]
        ),
        WRONG_TYPES,
        max_size=6,
    ).map(lambda d: yaml.safe_dump(d).encode()),
    st.text(max_size=80).map(str.encode),
)  # fmt: skip


@settings(max_examples=500)
@given(content=MALFORMED)
def test_malformed_policy_files_are_reported_with_their_path(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "charm-good.policy").write_text(VALID_POLICY)
        bad = os.path.join(directory, "charm-fuzz.policy")
        Path(bad).write_bytes(content)
        policies, problems = load_policies(directory)
        assert ("charm", "ops") in [p.requestor for p in policies]  # the good file still applies
        assert len(policies) + len(problems) == 2
        for problem in problems:
            assert isinstance(problem, FileFormatError)
            assert problem.path == bad
            assert str(problem).startswith(bad)


@settings(max_examples=500)
@given(content=MALFORMED)
def test_malformed_event_files_are_reported_with_their_path(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "charm-good.deferred").write_text(VALID_EVENT)
        bad = os.path.join(directory, "charm-fuzz.deferred")
        Path(bad).write_bytes(content)
        view = Ledger(directory).read()
        assert "openvswitch-switch" in [e.service for e in view.events]
        assert len(view.events) + len(view.problems) == 2
        for problem in view.problems:
            assert problem.path == bad
            assert str(problem).startswith(bad)
        # The gate's own read-modify-write is not derailed by the bad file either.
        stored, created = Ledger(directory).record(
            DeferredEvent("cron", "restart", "Package update", 7, "ops", "charm")
        )
        assert created and stored.path is not None


@settings(max_examples=300)
@given(text=st.text(max_size=150))
def test_parse_policy_raises_only_file_format_errors(text: str) -> None:
    try:
        parse_policy(text, "/etc/policy-rc.d/x.policy")
    except FileFormatError as exc:
        assert exc.path == "/etc/policy-rc.d/x.policy"


# -- event round trip -----------------------------------------------------------------------------

REQUESTOR = st.one_of(st.none(), NAME)


@settings(max_examples=500)
@given(
    service=NAME,
    action=ACTION,
    reason=FREE_TEXT,
    timestamp=st.integers(min_value=0, max_value=2**40),
    name=REQUESTOR,
    kind=REQUESTOR,
)
@example(
    service="cron", action="restart", reason="a: b\n- c\n'\"#", timestamp=0, name="x", kind="y"
)
@example(service="cron", action="restart", reason="\x85\u2028\ufeff\r\n\t", timestamp=1, name=None,
         kind=None)  # fmt: skip
def test_event_round_trip(
    service: str,
    action: str,
    reason: str,
    timestamp: int,
    name: str | None,
    kind: str | None,
) -> None:
    event = DeferredEvent(service, action, reason, timestamp, name, kind)
    text = render_event(event)
    parsed = parse_event(text, "/x.deferred")
    expected_name, expected_kind = name or "unknown", kind or "unknown"
    assert parsed == DeferredEvent(
        service, action, reason, timestamp, expected_name, expected_kind, "/x.deferred"
    )
    assert yaml.safe_load(text) == {
        "action": action,
        "policy_requestor_name": expected_name,
        "policy_requestor_type": expected_kind,
        "reason": reason,
        "service": service,
        "timestamp": timestamp,
    }
    assert same(miniyaml.load(text), yaml.safe_load(text))
