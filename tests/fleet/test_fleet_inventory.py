"""interlock's own YAML inventory: what it yields, and every mistake named with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from interlock.documents import load_yaml
from interlock.errors import FileFormatError
from interlock.fleet.inventory import Host
from interlock.fleet.inventory_file import load_inventory


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_lab_inventory_hosts_defaults_and_overrides(fixtures: Path) -> None:
    inventory = load_inventory(fixtures / "interlock" / "lab.yaml")
    base = (fixtures / "interlock").absolute()
    assert list(inventory.hosts) == [
        "ctl1", "ctl2", "ctl3", "lb1", "lb2",
        "cmp1", "cmp2", "cmp3", "cmp4", "cmp5", "cmp6", "bastion",
    ]  # fmt: skip
    assert inventory.hosts["ctl1"] == Host(
        name="ctl1",
        address="10.200.0.11",
        port=22,
        user="root",
        key=str(base / "keys" / "id_ed25519"),
        groups=("controllers", "openstack"),
        labels={"az": "az1", "role": "controller"},
    )
    assert inventory.host_vars["ctl1"] == {"region": "east", "log_level": "info", "api_port": 8080}
    assert inventory.hosts["ctl3"].port == 2222
    assert inventory.hosts["lb2"].user == "haproxy-admin"
    assert inventory.hosts["cmp6"].address == "fd00::26"
    assert inventory.hosts["cmp6"].key == "/etc/interlock/cmp6.key"
    assert inventory.hosts["cmp5"].address == "cmp5.lab.example"
    assert inventory.known_hosts == str(base / "keys" / "known_hosts")


def test_lab_inventory_labels_are_strings(fixtures: Path) -> None:
    inventory = load_inventory(fixtures / "interlock" / "lab.yaml")
    assert inventory.hosts["cmp3"].labels == {"az": "az2", "rack": "2"}
    assert inventory.hosts["bastion"].labels == {}


def test_group_vars_apply_parent_first_then_child_then_host(fixtures: Path) -> None:
    inventory = load_inventory(fixtures / "interlock" / "lab.yaml")
    # openstack (parent) says warning, computes (child) says debug: the child wins.
    assert inventory.host_vars["cmp1"]["log_level"] == "debug"
    assert inventory.host_vars["cmp1"]["region"] == "east"
    # Merge key (<<) supplies the shared vars; the host's own vars replace them.
    assert inventory.host_vars["cmp1"]["nova_virt_type"] == "kvm"
    assert inventory.host_vars["cmp4"]["nova_virt_type"] == "qemu"
    assert "log_level" not in inventory.host_vars["lb1"]


def test_groups_include_children_hosts_in_inventory_order(fixtures: Path) -> None:
    inventory = load_inventory(fixtures / "interlock" / "lab.yaml")
    assert inventory.groups["openstack"] == (
        "ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3", "cmp4", "cmp5", "cmp6",
    )  # fmt: skip
    assert inventory.groups["edge"] == ("lb1", "lb2")
    assert inventory.hosts["lb1"].groups == ("edge", "loadbalancers")
    assert inventory.groups["ungrouped"] == ("bastion",)
    assert inventory.hosts["bastion"].groups == ("ungrouped",)


def test_loadbalancers(fixtures: Path) -> None:
    lbs = load_inventory(fixtures / "interlock" / "lab.yaml").loadbalancers
    assert (lbs["lb1"].host, lbs["lb1"].socket, lbs["lb1"].tcp) == (
        "lb1",
        "/run/haproxy/admin.sock",
        None,
    )
    assert (lbs["lb2"].host, lbs["lb2"].socket, lbs["lb2"].tcp) == (None, None, "10.200.0.7:9999")
    assert (lbs["local"].host, lbs["local"].socket) == (None, "/run/haproxy/admin.sock")


def test_minimal_inventory_uses_contract_defaults(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts:\n  a: {address: 192.0.2.1}\n"))
    host = inventory.hosts["a"]
    assert (host.port, host.user, host.key) == (22, "root", None)
    assert inventory.known_hosts is None
    assert inventory.loadbalancers == {}


def test_interlock_yaml_is_detected_without_a_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  a: {address: 192.0.2.1, groups: [x]}\n", name="fleet")
    assert load_inventory(path).groups == {"x": ("a",)}


def test_interlock_yaml_without_a_suffix_reports_yaml_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  a: {address: 192.0.2.1\n", name="fleet")
    with pytest.raises(FileFormatError, match="not valid YAML") as caught:
        load_inventory(path)
    assert caught.value.line == 3


def test_host_is_hashable_and_frozen() -> None:
    host = Host(name="a", address="192.0.2.1", labels={"x": "1"})
    assert {host: 1}[host] == 1
    with pytest.raises(AttributeError):
        host.port = 2  # type: ignore[misc]


ERRORS = [
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        hostz: {}
        """,
        3,
        "unknown key 'hostz'",
        id="unknown-top-key",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            adress: 192.0.2.2
        """,
        4,
        "host a: unknown key 'adress'",
        id="unknown-host-key",
    ),
    pytest.param(
        """
        hosts:
          cmp1: {address: 192.0.2.1}
          cmp2: {address: 192.0.2.2}
          cmp1: {address: 192.0.2.3}
        """,
        4,
        "duplicate key 'cmp1' (first on line 2)",
        id="duplicate-host",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            port: 22
            port: 2222
        """,
        5,
        "duplicate key 'port' (first on line 4)",
        id="duplicate-host-field",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, port: "22a"}
        """,
        2,
        "port must be a port number",
        id="port-string",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            port: 0
        """,
        4,
        "port must be a port number",
        id="port-zero",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            port: true
        """,
        4,
        "port must be a port number",
        id="port-bool",
    ),
    pytest.param(
        """
        defaults:
          port: 70000
        hosts:
          a: {address: 192.0.2.1}
        """,
        2,
        "port must be a port number",
        id="default-port-range",
    ),
    pytest.param(
        """
        defaults:
          user: root
          identity: /k
        hosts:
          a: {address: 192.0.2.1}
        """,
        3,
        "defaults: unknown key 'identity'",
        id="unknown-default-key",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            groups: computes
        """,
        4,
        "groups must be a list, not str 'computes'",
        id="groups-not-list",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            groups:
              - computes
              - [nested]
        """,
        6,
        "groups entries must be names",
        id="group-entry-not-name",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        """.replace("192.0.2.1", "'not an address'"),
        2,
        "address must be an IP address or DNS name",
        id="bad-address",
    ),
    pytest.param(
        """
        hosts:
          a: {port: 22}
        """,
        2,
        "host a: missing required key 'address'",
        id="missing-address",
    ),
    pytest.param(
        """
        hosts:
          "-rf": {address: 192.0.2.1}
        """,
        2,
        "invalid host name '-rf'",
        id="host-name-option-like",
    ),
    pytest.param(
        """
        hosts:
          "a b": {address: 192.0.2.1}
        """,
        2,
        "invalid host name 'a b'",
        id="host-name-space",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, user: "root; reboot"}
        """,
        2,
        "user must be a user name",
        id="bad-user",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            labels:
              az: [az1, az2]
        """,
        5,
        "label az must be a string or an integer, not a list",
        id="label-list",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, groups: [controllers]}
        groups:
          openstack:
            children:
              - controllers
              - computes
        """,
        7,
        "child group 'computes' is not defined",
        id="undefined-child",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, groups: [x]}
        groups:
          y:
            children: [x, z]
          z:
            children: [y]
        """,
        7,
        "group cycle: y → z → y",
        id="cycle",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, groups: [x]}
        groups:
          x:
            children: [x]
        """,
        5,
        "group cycle: x → x",
        id="self-cycle",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, groups: [x]}
        groups:
          x: {vars: {}, hosts: [a]}
        """,
        4,
        "group x: unknown key 'hosts'",
        id="unknown-group-key",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1, groups: [all]}
        """,
        2,
        "'all' is a reserved group name",
        id="reserved-group",
    ),
    pytest.param(
        """
        hosts:
          web: {address: 192.0.2.1, groups: [web]}
        """,
        2,
        "host web has the same name as a group",
        id="host-named-like-group",
    ),
    pytest.param(
        """
        hosts:
          a:
            address: 192.0.2.1
            vars:
              ok: 1
              2: two
        """,
        6,
        "host a: variable names must be strings, not 2",
        id="var-name-not-string",
    ),
    pytest.param(
        """
        hosts: {}
        """,
        1,
        "the inventory defines no hosts",
        id="no-hosts",
    ),
    pytest.param(
        """
        hosts:
          - a
        """,
        1,
        "hosts must be a mapping, not a list",
        id="hosts-list",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        loadbalancers:
          lb1: {host: lb9, socket: /run/haproxy/admin.sock}
        """,
        4,
        "host 'lb9' is not in the inventory",
        id="lb-unknown-host",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        loadbalancers:
          lb1: {tcp: "192.0.2.9:9999", socket: /run/haproxy/admin.sock}
        """,
        4,
        "tcp excludes host and socket",
        id="lb-tcp-and-socket",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        loadbalancers:
          lb1:
            tcp: "192.0.2.9"
        """,
        5,
        "tcp must be ADDRESS:PORT",
        id="lb-tcp-no-port",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1}
        loadbalancers:
          lb1: {host: a}
        """,
        4,
        "needs socket",
        id="lb-host-without-socket",
    ),
    pytest.param(
        """
        hosts:
          a: {address: 192.0.2.1
        """,
        3,
        "not valid YAML",
        id="yaml-syntax",
    ),
    pytest.param(
        """
        hosts:
          a: !secret {address: 192.0.2.1}
        """,
        2,
        "could not determine a constructor for the tag '!secret'",
        id="unknown-tag",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, caught.value
    assert message in caught.value.message, caught.value
    assert str(caught.value).startswith(f"{path} line {line}: ")


def test_empty_yaml_file_is_not_an_inventory(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    with pytest.raises(FileFormatError, match="must be a YAML mapping"):
        load_inventory(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="cannot read"):
        load_inventory(tmp_path / "absent.yaml")


def test_duplicate_keys_after_merge_are_allowed_but_written_twice_are_not(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        base: &base {a: 1, b: 2}
        merged: {<<: *base, b: 3}
        """
    )
    data = load_yaml(text, "x.yaml")
    assert data == {"base": {"a": 1, "b": 2}, "merged": {"a": 1, "b": 3}}
    with pytest.raises(FileFormatError) as caught:
        load_yaml("a: 1\nb: 2\na: 3\n", "x.yaml")
    assert (caught.value.line, caught.value.message) == (3, "duplicate key 'a' (first on line 1)")


def test_yaml_values_remember_their_lines() -> None:
    data = load_yaml("top:\n  one: 1\n  list:\n    - x\n    - y\n", "x.yaml")
    assert isinstance(data, dict)
    top = data["top"]
    assert top.line == 2
    assert top.line_of("list") == 3
    assert top["list"].item_lines == [4, 5]
