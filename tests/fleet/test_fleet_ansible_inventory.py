"""Ansible inventories (INI, YAML, group_vars/, host_vars/) read the way Ansible reads them."""

from __future__ import annotations

import getpass
import textwrap
from pathlib import Path

import pytest

from interlock.errors import FileFormatError
from interlock.fleet.ansible_inventory import expand_host_range
from interlock.fleet.inventory import Inventory
from interlock.fleet.inventory_file import load_inventory


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def kolla(fixtures: Path) -> Inventory:
    return load_inventory(fixtures / "kolla" / "multinode")


@pytest.fixture
def osa(fixtures: Path) -> Inventory:
    return load_inventory(fixtures / "osa" / "inventory.yml")


# --- a kolla-ansible style multinode INI file ---------------------------------------------------


def test_kolla_ranges_expand_in_order(kolla: Inventory) -> None:
    assert kolla.groups["control"] == (
        "ctl01.east.example",
        "ctl02.east.example",
        "ctl03.east.example",
    )
    computes = kolla.groups["compute"]
    assert len(computes) == 20
    assert computes[0] == "compute01.east.example"
    assert computes[-1] == "compute20.east.example"
    assert kolla.groups["storage"] == (
        "stor-a.east.example",
        "stor-b.east.example",
        "stor-c.east.example",
    )
    assert len(kolla.hosts) == 3 + 2 + 20 + 1 + 3 + 1


def test_kolla_connection_variables_map_to_host_fields(kolla: Inventory) -> None:
    net = kolla.hosts["net01.east.example"]
    assert (net.address, net.port, net.user, net.key) == (
        "10.20.0.31",
        22,
        "deploy",
        "/etc/kolla/ssh/id_ed25519",
    )
    assert "ansible_host" not in kolla.host_vars["net01.east.example"]
    assert "ansible_user" not in kolla.host_vars["net01.east.example"]
    assert "ansible_ssh_private_key_file" not in kolla.host_vars["net01.east.example"]
    # host:port in the host line
    assert kolla.hosts["stor-b.east.example"].port == 2222
    # no ansible_host: the inventory name is the address
    assert kolla.hosts["ctl02.east.example"].address == "ctl02.east.example"


def test_kolla_children_and_forward_references(kolla: Inventory) -> None:
    # [nova-api:children] names nova before [nova:children] declares it.
    assert kolla.groups["nova-api"] == kolla.groups["control"]
    assert set(kolla.groups["neutron-openvswitch-agent"]) == set(
        kolla.groups["network"] + kolla.groups["compute"]
    )
    ctl = kolla.hosts["ctl01.east.example"]
    assert {"control", "baremetal", "common", "nova", "nova-api", "tls-backend"} <= set(ctl.groups)
    assert "all" not in ctl.groups
    assert kolla.groups["ungrouped"] == ()


def test_kolla_values_are_python_literals_when_they_are_one(kolla: Inventory) -> None:
    values = kolla.host_vars["mon01.east.example"]
    assert values["kolla_max_fail_percentage"] == 20
    assert values["kolla_internal_vip_address"] == "10.20.0.250"
    assert values["openstack_release"] == "2024.1"
    assert values["enable_haproxy"] == "yes"
    assert kolla.host_vars["net02.east.example"]["neutron_external_interface"] == "eth2"


def test_kolla_variable_precedence(kolla: Inventory) -> None:
    compute = kolla.host_vars["compute03.east.example"]
    control = kolla.host_vars["ctl02.east.example"]
    # [compute:vars] (deeper group) beats [baremetal:vars]
    assert compute["log_level"] == "debug"
    assert control["log_level"] == "info"
    # group_vars/compute.yml beats the inventory's own [compute:vars]
    assert compute["nova_compute_virt_type"] == "qemu"
    assert compute["ceph_nova_user"] == "nova"
    # group_vars/all/ is a directory: its files apply in name order (tuning.yml after main.yml)
    assert control["docker_registry"] == "registry-mirror.east.example:4000"
    assert control["network_interface"] == "bond0"


def test_kolla_host_vars_files(kolla: Inventory) -> None:
    moved = kolla.hosts["compute07.east.example"]
    assert moved.address == "10.20.1.107"
    assert kolla.host_vars["compute07.east.example"]["network_interface"] == "eno1"
    # host_vars/ctl01.east.example has no suffix
    assert kolla.hosts["ctl01.east.example"].port == 2201
    assert kolla.hosts["ctl02.east.example"].port == 22


def test_kolla_local_host_outside_baremetal(kolla: Inventory) -> None:
    local = kolla.hosts["localhost"]
    assert local.groups == ("deployment",)
    assert kolla.host_vars["localhost"]["ansible_connection"] == "local"
    # Not in baremetal: no ansible_user, so the user running interlock, as with ssh and Ansible.
    assert local.user == getpass.getuser()
    assert local.key is None


def test_kolla_select(kolla: Inventory) -> None:
    names = [h.name for h in kolla.select("compute[0:2]:storage:!stor-b*")]
    assert names == [
        "compute01.east.example",
        "compute02.east.example",
        "compute03.east.example",
        "stor-a.east.example",
        "stor-c.east.example",
    ]
    assert [h.name for h in kolla.select("nova-api:&ctl0[13]*")] == [
        "ctl01.east.example",
        "ctl03.east.example",
    ]


# --- an OpenStack-Ansible style YAML inventory ----------------------------------------------------


def test_osa_yaml_structure(osa: Inventory) -> None:
    assert osa.groups["shared_infra_hosts"] == ("infra1", "infra2", "infra3")
    assert len(osa.groups["compute_hosts"]) == 12
    assert osa.groups["compute_hosts"][0] == "compute001"
    assert osa.groups["openstack_control"] == ("infra1", "infra2", "infra3", "net1", "net2")
    assert osa.groups["nova_compute"] == osa.groups["compute_hosts"]
    # a host directly under all: with no other group is ungrouped
    assert osa.groups["ungrouped"] == ("deploy.west.example",)
    assert osa.hosts["infra1"].groups == ("log_hosts", "openstack_control", "shared_infra_hosts")


def test_osa_yaml_connection_fields_and_types(osa: Inventory) -> None:
    infra = osa.hosts["infra2"]
    assert (infra.address, infra.user, infra.key) == (
        "172.29.236.12",
        "ubuntu",
        "/home/ubuntu/.ssh/osa_deploy",
    )
    assert osa.host_vars["infra2"] == {
        "openstack_domain": "west.example",
        "haproxy_enabled": True,
        "az": "az2",
    }
    assert osa.hosts["net2"].user == "netops"
    assert osa.hosts["cinder-a"].port == 2200
    ipv6 = osa.hosts["2001:db8::21"]
    assert (ipv6.address, ipv6.port) == ("2001:db8::21", 2022)
    assert osa.host_vars["compute005"]["nova_cpu_allocation_ratio"] == 4.0
    assert osa.host_vars["compute005"]["nova_virt_type"] == "kvm"


def test_osa_select_ipv6_with_commas(osa: Inventory) -> None:
    assert [h.name for h in osa.select("2001:db8::21,cinder-b")] == ["2001:db8::21", "cinder-b"]


# --- INI rules ------------------------------------------------------------------------------------


def test_ini_hosts_before_a_section_are_ungrouped_and_comments_are_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts.ini",
        """
        # a comment
        ; another comment
        jump.example ansible_host=192.0.2.5   # trailing comment
        [web]
        web1 motd="hello world" ports="[80, 443]" opts="{'a': 1}" debug=True raw=a=b
        web2:2202
        """,
    )
    inventory = load_inventory(path)
    assert inventory.groups["ungrouped"] == ("jump.example",)
    assert inventory.hosts["jump.example"].address == "192.0.2.5"
    web1 = inventory.host_vars["web1"]
    assert web1 == {
        "motd": "hello world",
        "ports": [80, 443],
        "opts": {"a": 1},
        "debug": True,
        "raw": "a=b",
    }
    assert inventory.hosts["web2"].port == 2202


def test_ini_host_in_two_groups_merges(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """
        [a]
        h1 x=1
        [b]
        h1 y=2
        [a:vars]
        shared=from-a
        [b:vars]
        shared=from-b
        """,
    )
    inventory = load_inventory(path)
    assert inventory.hosts["h1"].groups == ("a", "b")
    # Sibling groups at the same depth apply in name order: b after a.
    assert inventory.host_vars["h1"] == {"x": 1, "y": 2, "shared": "from-b"}


def test_ini_group_priority_reorders_siblings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """
        [a]
        h1
        [b]
        h1
        [a:vars]
        shared=from-a
        ansible_group_priority=10
        [b:vars]
        shared=from-b
        """,
    )
    assert load_inventory(path).host_vars["h1"]["shared"] == "from-a"


def test_ini_group_vars_file_beats_inventory_and_host_beats_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """
        [db]
        db1 level=host
        db2
        [db:vars]
        level=inventory-group
        [all:vars]
        level=inventory-all
        """,
    )
    write(tmp_path, "group_vars/all.yaml", "level: file-all\nonly_all: 1\n")
    write(tmp_path, "group_vars/db.json", '{"level": "file-db"}\n')
    inventory = load_inventory(path)
    assert inventory.host_vars["db1"]["level"] == "host"
    assert inventory.host_vars["db2"]["level"] == "file-db"
    assert inventory.host_vars["db2"]["only_all"] == 1


def test_range_expansion() -> None:
    assert list(expand_host_range("web[1:3]")) == ["web1", "web2", "web3"]
    assert list(expand_host_range("web[08:10].x")) == ["web08.x", "web09.x", "web10.x"]
    assert list(expand_host_range("n[0:6:3]")) == ["n0", "n3", "n6"]
    assert list(expand_host_range("db-[a:c]")) == ["db-a", "db-b", "db-c"]
    assert list(expand_host_range("r[1:2]n[a:b]")) == ["r1na", "r1nb", "r2na", "r2nb"]
    assert list(expand_host_range("x[:2]")) == ["x0", "x1", "x2"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("web[3:1]", "range begins after its end"),
        ("web[01:100]", "same width"),
        ("web[a:3]", "neither a numeric nor a letter range"),
        ("web[1:]", "needs an end"),
        ("web[1:5:0]", "positive integer"),
        ("web[1:2", "unbalanced"),
    ],
)
def test_bad_ranges(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(expand_host_range(pattern))


INI_ERRORS = [
    pytest.param(
        """
        [openstack:children]
        control
        computes
        [control]
        ctl1
        """,
        3,
        "section [openstack:children] includes undefined group 'computes'",
        id="undefined-child",
    ),
    pytest.param(
        """
        [web]
        w1
        [db:vars]
        x=1
        """,
        3,
        "section [db:vars] is for undefined group 'db'",
        id="vars-undefined-group",
    ),
    pytest.param(
        """
        [web:host]
        w1
        """,
        1,
        "section [web:host] has unknown type 'host'",
        id="unknown-section-type",
    ),
    pytest.param(
        """
        [web]
        w1 novalue
        """,
        2,
        "expected key=value host variable, got 'novalue'",
        id="host-var-without-value",
    ),
    pytest.param(
        """
        [web]
        w1 motd="unterminated
        """,
        2,
        "cannot parse host line",
        id="unbalanced-quote",
    ),
    pytest.param(
        """
        [web]
        w1
        [web:vars]
        novalue
        """,
        4,
        "expected key=value in [web:vars]",
        id="group-var-without-value",
    ),
    pytest.param(
        """
        [web]
        w[1:2]
        w[5:3]
        """,
        3,
        "range begins after its end",
        id="bad-range",
    ),
    pytest.param(
        """
        [a:children]
        b
        [b:children]
        a
        """,
        4,
        "group cycle: a → b → a",
        id="cycle",
    ),
    pytest.param(
        """
        [web]
        w1 ansible_host="{{ lookup('env', 'WEB') }}"
        """,
        2,
        "ansible_host uses a template",
        id="templated-address",
    ),
    pytest.param(
        """
        [web]
        w1 ansible_port=ssh
        """,
        2,
        "expected a port number (1-65535), not 'ssh'",
        id="bad-port",
    ),
    pytest.param(
        """
        [web]
        w1 ansible_user="bad user"
        """,
        2,
        "expected a user name",
        id="bad-user",
    ),
    pytest.param(
        """
        [web]
        w1:
        """,
        2,
        "ends in ':' without a port",
        id="colon-without-port",
    ),
    pytest.param(
        """
        [web server]
        """,
        1,
        "invalid section header",
        id="space-in-section",
    ),
    pytest.param(
        """
        [web]
        w1 ansible_host=10.0.0.1
        [web:vars]
        ansible_port=65536
        """,
        4,
        "expected a port number",
        id="bad-group-port",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), INI_ERRORS)
def test_ini_mistakes_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, "hosts", text)
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, caught.value
    assert message in caught.value.message, caught.value


def test_bad_value_in_group_vars_file_names_that_file(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[web]\nw1\n")
    vars_file = write(tmp_path, "group_vars/web.yml", "---\nntp: pool\nansible_port: '22x'\n")
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert (caught.value.path, caught.value.line) == (str(vars_file), 3)


def test_group_vars_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[web]\nw1\n")
    vars_file = write(tmp_path, "group_vars/web", "- a\n- b\n")
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert caught.value.path == str(vars_file)
    assert "must be a YAML mapping" in caught.value.message


def test_vault_values_stay_opaque(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts.yml",
        """
        all:
          hosts:
            h1:
              db_password: !vault |
                $ANSIBLE_VAULT;1.1;AES256
                6231
              motd: !unsafe "{{ not a template }}"
        """,
    )
    values = load_inventory(path).host_vars["h1"]
    assert str(values["db_password"]).startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert values["motd"] == "{{ not a template }}"


YAML_ERRORS = [
    pytest.param(
        """
        all:
          children:
            web:
              host:
                w1:
        """,
        4,
        "group web: unknown key 'host'",
        id="unknown-group-key",
    ),
    pytest.param(
        """
        all:
          children:
            web:
              hosts:
                - w1
        """,
        4,
        "group web: hosts must be a mapping",
        id="hosts-as-list",
    ),
    pytest.param(
        """
        web:
          hosts:
            w1:
            w2:
            w1:
        """,
        5,
        "duplicate key 'w1' (first on line 3)",
        id="duplicate-host",
    ),
    pytest.param(
        """
        web:
          hosts:
            w1: just-a-string
        """,
        3,
        "host w1: variables must be a mapping",
        id="host-vars-not-mapping",
    ),
    pytest.param(
        """
        web:
          - w1
        """,
        1,
        "group web must be a mapping of hosts, vars and children",
        id="group-as-list",
    ),
    pytest.param(
        """
        web:
          hosts:
            w1:
              ansible_host: "{{ inventory_hostname }}.mgmt"
        """,
        4,
        "uses a template",
        id="templated-address",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), YAML_ERRORS)
def test_yaml_mistakes_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, "hosts.yml", text)
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, caught.value
    assert message in caught.value.message, caught.value


def test_yml_suffix_with_bad_yaml_is_a_yaml_error_not_ini(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  hosts: [\n")
    with pytest.raises(FileFormatError, match="not valid YAML"):
        load_inventory(path)


def test_ini_suffix_is_always_ini(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web]\nw1 ansible_host=192.0.2.7\n")
    assert load_inventory(path).hosts["w1"].address == "192.0.2.7"
