"""Drop-in compatibility with the OpenStack charms' files and strings (tests/fixtures/charm)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from host.gate_env import FIXTURES
from interlock.cli.main import main as cli_main
from interlock.host import miniyaml
from interlock.host.hooks import DeferredHook
from interlock.host.ledger import DeferredEvent, Ledger, parse_event, render_event
from interlock.host.policy import load_policies, parse_policy, render_policy
from interlock.host.report import charm_restart_line, charm_show, status_message

CHARM = FIXTURES / "charm"
POLICY_STYLES = ["policy-flow-lists", "policy-block", "policy-flow"]
EVENT_STYLES = [
    "deferred-seed",
    "deferred-flow-two-lines",
    "deferred-flow-one-line",
    "deferred-block",
]
NEUTRON_SERVICES = [
    "neutron-dhcp-agent",
    "neutron-l3-agent",
    "neutron-metadata-agent",
    "neutron-metering-agent",
    "neutron-openvswitch-agent",
    "openvswitch-switch",
    "ovs-vswitchd",
    "ovsdb-server",
]


def only_file(directory: str) -> Path:
    [path] = (CHARM / directory).iterdir()
    return path


# -- reading what the charms wrote ---------------------------------------------------------------


@pytest.mark.parametrize("style", POLICY_STYLES)
def test_policy_styles_read_identically(style: str) -> None:
    path = only_file(style)
    text = path.read_text()
    assert miniyaml.load(text) == yaml.safe_load(text)
    policy = parse_policy(text, str(path))
    assert policy.requestor == ("charm", "neutron-gateway")
    assert sorted(policy.blocked) == NEUTRON_SERVICES
    assert all(actions == {"restart", "stop", "try-restart"} for actions in policy.blocked.values())


@pytest.mark.parametrize("style", EVENT_STYLES)
def test_event_styles_read_identically(style: str) -> None:
    path = only_file(style)
    text = path.read_text()
    assert miniyaml.load(text) == yaml.safe_load(text)
    event = parse_event(text, str(path))
    assert (event.service, event.action, event.reason, event.timestamp) == (
        "openvswitch-switch",
        "restart",
        "Package update",
        1619175335,
    )
    assert (event.requestor_type, event.requestor_name) == ("charm", "neutron-gateway")


def test_a_charm_ledger_in_mixed_styles(tmp_path: Path) -> None:
    view = Ledger(str(CHARM / "ledger-neutron-gateway")).read()
    assert view.problems == []
    assert len(view.events) == 7
    assert [e.timestamp for e in view.events][:2] == [1619173568, 1619175335]
    reasons = {e.service: e.reason for e in view.events}
    assert reasons["neutron-dhcp-agent"] == (
        "File(s) changed: /etc/neutron/dhcp_agent.ini, /etc/neutron/neutron.conf"
    )


def test_missing_requestor_means_unknown(tmp_path: Path) -> None:
    path = tmp_path / "x.deferred"
    path.write_text("{action: restart, reason: r, service: cron, timestamp: 5}\n")
    event = parse_event(path.read_text(), str(path))
    assert (event.requestor_name, event.requestor_type, event.requestor) == (None, None, "unknown")


def test_policy_other_extensions_and_subdirectories_are_ignored(tmp_path: Path) -> None:
    shutil.copy(only_file("policy-flow-lists"), tmp_path / "charm-neutron-gateway.policy")
    (tmp_path / "notes.txt").write_text("blocked_actions: nonsense\n")
    (tmp_path / "old.policy.dpkg-old").write_text("blocked_actions: nonsense\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "charm-x.policy").write_text("blocked_actions: nonsense\n")
    policies, problems = load_policies(str(tmp_path))
    assert problems == []
    assert [p.requestor for p in policies] == [("charm", "neutron-gateway")]


# -- what interlock writes, read back by PyYAML (the charms' reader) ---------------------------


def test_event_file_is_what_pyyaml_writes() -> None:
    event = DeferredEvent("openvswitch-switch", "restart", "Package update", 1619175335,
                          "neutron-gateway", "charm")  # fmt: skip
    text = render_event(event)
    assert text == only_file("deferred-block").read_text()
    assert text == yaml.safe_dump(yaml.safe_load(text), default_flow_style=False)


@pytest.mark.parametrize(
    "reason",
    [
        "File(s) changed: /etc/neutron/dhcp_agent.ini, /etc/neutron/neutron.conf",
        "yes",
        "123",
        "null",
        "- a dash",
        "'quoted' and \"double\"",
        "tab\there",
        "two\nlines",
        "ünïcødé ✓",
        "",
        " leading and trailing ",
        "#not a comment",
        "x: y",
    ],
)
def test_event_reasons_read_back_by_pyyaml(reason: str) -> None:
    event = DeferredEvent("nova-compute", "restart", reason, 1619175335, "nova", "charm")
    data = yaml.safe_load(render_event(event))
    assert data == {
        "action": "restart",
        "policy_requestor_name": "nova",
        "policy_requestor_type": "charm",
        "reason": reason,
        "service": "nova-compute",
        "timestamp": 1619175335,
    }


def test_gate_events_on_disk_are_read_by_pyyaml(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    stored, created = ledger.record(
        DeferredEvent("cron", "restart", "Package update", 1700000000, "interlock", "interlock")
    )
    assert created and stored.path is not None
    name = Path(stored.path).name
    assert name.startswith("interlock-interlock-") and name.endswith(".deferred")
    assert set(yaml.safe_load(Path(stored.path).read_text())) == {
        "action",
        "policy_requestor_name",
        "policy_requestor_type",
        "reason",
        "service",
        "timestamp",
    }


def test_policy_file_is_what_pyyaml_writes() -> None:
    blocked = {service: ["restart", "stop", "try-restart"] for service in NEUTRON_SERVICES}
    text = render_policy("neutron-gateway", "charm", blocked, comment="Managed by juju")
    assert text == only_file("policy-block").read_text()
    everyone = render_policy("interlock", "interlock", {"*": ["restart"]})
    assert yaml.safe_load(everyone) == {
        "blocked_actions": {"*": ["restart"]},
        "policy_requestor_name": "interlock",
        "policy_requestor_type": "interlock",
    }
    assert (
        everyone.splitlines()[1:]
        == yaml.safe_dump(yaml.safe_load(everyone), default_flow_style=False).splitlines()
    )


# -- the strings the charms show ----------------------------------------------------------------


def _event(service: str, timestamp: int = 1, reason: str = "Package update") -> DeferredEvent:
    return DeferredEvent(service, "restart", reason, timestamp, "neutron-gateway", "charm")


def test_status_line_wording() -> None:
    hook = DeferredHook("config-changed", ("true",), 1.0)
    events = [_event("b"), _event("a"), _event("b.service"), _event("a", 2)]
    assert status_message(events, []) == "Services queued for restart: a, b"
    assert status_message(events, [hook]) == (
        "Services queued for restart: a, b. "
        "Hooks skipped due to disabled auto restarts: config-changed"
    )
    assert status_message([], [hook, DeferredHook("amqp-changed", ("true",), 2.0)]) == (
        "Hooks skipped due to disabled auto restarts: amqp-changed, config-changed"
    )
    assert status_message([], []) == "No restarts or hooks deferred"


def test_restart_line_columns() -> None:
    line = charm_restart_line(_event("openvswitch-switch", 1619175335))
    assert line == "1619175335 openvswitch-switch" + " " * 23 + "Package update"
    assert line.index("Package") == 11 + 40 + 1


def test_show_deferred_events_matches_the_seed_byte_for_byte() -> None:
    view = Ledger(str(CHARM / "ledger-neutron-gateway")).read()
    assert charm_show(view.events, []) == (CHARM / "show-deferred-events.yaml").read_text()


def test_show_with_nothing_deferred() -> None:
    assert charm_show([], []) == "hooks: []\nrestarts: []\n"
    hooks = [DeferredHook("config-changed", ("puppet",), 1.0)]
    assert charm_show([], hooks) == "hooks:\n- config-changed\nrestarts: []\n"


def test_cli_show_charm_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(CHARM / "ledger-neutron-gateway", root / "var" / "lib" / "policy-rc.d")
    assert cli_main(["--root", str(root), "show", "--format", "charm"]) == 0
    assert capsys.readouterr().out == (CHARM / "show-deferred-events.yaml").read_text()
    assert cli_main(["--root", str(root), "status"]) == 1
    assert capsys.readouterr().out == (
        "Services queued for restart: neutron-dhcp-agent, neutron-l3-agent, "
        "neutron-metadata-agent, neutron-metering-agent, neutron-openvswitch-agent, "
        "openvswitch-switch\n"
    )
