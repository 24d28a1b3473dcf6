"""Pure parts of the lab: parsers on output captured from a real lab, renderers, the host plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.errors import FileFormatError, UsageError
from interlock.fleet.inventory_file import load_inventory
from interlock.lab.haproxy import render_haproxy_config
from interlock.lab.image import render_host_conf, upper_path
from interlock.lab.inventory_file import render_inventory
from interlock.lab.network import parse_mount_points, parse_overlapping_routes, up_commands
from interlock.lab.probe import parse_http_status, parse_listening_ports, parse_ssh_banner
from interlock.lab.processes import parse_stat
from interlock.lab.spec import LabSpec
from interlock.lab.sshd import LabKeys, known_hosts_pattern, render_sshd_config
from interlock.lab.state import BOOTING, LabState, parse_state, render_state

DATA = Path(__file__).parent / "data"


def test_listening_ports_from_a_real_proc_net_tcp() -> None:
    # The capture also holds TIME_WAIT connections to port 8080; only listeners count.
    assert parse_listening_ports((DATA / "proc-net-tcp.txt").read_text()) == {22, 8080}
    assert parse_listening_ports("  sl  local_address rem_address   st\n") == set()


def test_ssh_banner_and_http_status() -> None:
    assert parse_ssh_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n") == "OpenSSH_9.2p1"
    assert parse_ssh_banner(b"HTTP/1.1 400 Bad Request\r\n") is None
    assert parse_ssh_banner(b"") is None
    assert parse_http_status(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n") == 200
    assert parse_http_status(b"HTTP/1.0 503 Service Unavailable\r\n\r\n") == 503
    assert parse_http_status(b"SSH-2.0-OpenSSH_9.2p1\r\n") is None
    assert parse_http_status(b"") is None


def test_proc_stat_fields_survive_odd_command_names() -> None:
    real = (
        "4074 (cat) R 4073 3947 3413 0 -1 4194560 167 0 0 0 0 0 0 0 20 0 1 0 88113 3133440 412 "
        "18446744073709551615 94758209339392 94758209359273 140722830162208 0 0 0 0 0 0 0 0 0 17"
    )
    assert parse_stat(real) == ("R", 4073, 88113)
    assert parse_stat(real.replace("(cat)", "(a) (b c)")) == ("R", 4073, 88113)


def test_mount_points_from_a_real_lab_host() -> None:
    points = parse_mount_points((DATA / "lab-host-mountinfo.txt").read_text())

    assert {"/etc", "/var/lib", "/var/log", "/usr/sbin", "/run", "/root"} <= set(points)
    assert "/run/netns" in points
    assert parse_mount_points(r"1 0 0:1 / /with\040space rw - tmpfs x rw") == ["/with space"]


def test_overlapping_routes_from_a_real_routing_table() -> None:
    routes = (DATA / "ip-route.json").read_text()

    assert parse_overlapping_routes(routes, "10.231.0.0/16", own_device="itry-br") == []
    assert parse_overlapping_routes(routes, "10.231.7.0/24", own_device="") == [
        "10.231.0.0/16 dev itry-br"
    ]
    assert parse_overlapping_routes(routes, "192.0.2.128/25", own_device="") == [
        "192.0.2.0/24 dev eth0"
    ]
    # The default route overlaps everything and is not a reason to refuse.
    assert parse_overlapping_routes(routes, "10.240.3.0/24", own_device="") == []


def test_known_hosts_pattern_covers_the_subnet() -> None:
    assert known_hosts_pattern("10.200.0.0/16") == "10.200.*"
    assert known_hosts_pattern("10.241.7.0/24") == "10.241.7.*"
    assert known_hosts_pattern("10.200.16.0/20") == "10.200.*"
    assert known_hosts_pattern("10.0.0.0/8") == "10.*"


def test_plan_names_roles_addresses_and_short_interface_names() -> None:
    spec = LabSpec(Path("/var/tmp/lab"), hosts=8, controllers=3, lbs=2)
    plan = spec.plan()

    assert [(h.name, h.address) for h in plan] == [
        ("lb1", "10.200.0.5"),
        ("lb2", "10.200.0.6"),
        ("ctl1", "10.200.0.11"),
        ("ctl2", "10.200.0.12"),
        ("ctl3", "10.200.0.13"),
        ("cmp1", "10.200.0.21"),
        ("cmp2", "10.200.0.22"),
        ("cmp3", "10.200.0.23"),
    ]
    assert [h.labels.get("az") for h in plan if h.role == "controller"] == ["az1", "az2", "az3"]
    assert plan[0].netns == "ilab-lb1" and spec.bridge == "ilab-br" and spec.gateway == "10.200.0.1"
    big = LabSpec(Path("/var/tmp/lab"), name="abcdefgh", hosts=1000, controllers=30, lbs=8)
    assert max(len(h.veth) for h in big.plan()) <= 15
    assert len({h.address for h in big.plan()}) == 1000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "UPPER"}, "lowercase"),
        ({"name": "muchtoolong"}, "1-8"),
        ({"directory": Path("/etc/lab")}, "lies under /etc"),
        ({"directory": Path("/run/lab")}, "lies under /run"),
        ({"directory": Path("/var/tmp/a,b")}, "commas"),
        ({"subnet": "10.200.0.0/29"}, "too small"),
        ({"subnet": "10.200.0.1/16"}, "host bits"),
        ({"subnet": "10.200.0.0/26", "hosts": 50}, "too few addresses"),
        ({"hosts": 3, "controllers": 3, "lbs": 1}, "no room"),
        ({"controllers": 0, "lbs": 1}, "at least one controller"),
        ({"hosts": 1001}, "between 1 and 1000"),
    ],
)
def test_spec_refuses_what_cannot_work(fields: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LabSpec(**fields)  # type: ignore[arg-type]


def test_network_is_built_in_one_batch() -> None:
    spec = LabSpec(Path("/var/tmp/lab"), hosts=2, controllers=1, lbs=0)
    assert up_commands(spec, spec.plan()) == [
        "link add ilab-br type bridge",
        "addr add 10.200.0.1/16 dev ilab-br",
        "link set ilab-br up",
        "netns add ilab-ctl1",
        "link add ilab-v1 type veth peer name eth0 netns ilab-ctl1",
        "link set ilab-v1 master ilab-br up",
        "netns add ilab-cmp1",
        "link add ilab-v2 type veth peer name eth0 netns ilab-cmp1",
        "link set ilab-v2 master ilab-br up",
    ]


def test_inventory_is_read_by_the_fleet_inventory_loader(tmp_path: Path) -> None:
    spec = LabSpec(tmp_path, hosts=6, controllers=2, lbs=1)
    path = tmp_path / "inventory.yaml"
    path.write_text(render_inventory(spec.plan(), tmp_path / "id_ed25519", tmp_path / "kh"))

    inventory = load_inventory(path)

    assert [h.name for h in inventory.select("controllers")] == ["ctl1", "ctl2"]
    assert inventory.hosts["ctl1"].address == "10.200.0.11"
    assert inventory.hosts["ctl1"].key == str(tmp_path / "id_ed25519")
    assert inventory.hosts["cmp2"].labels == {"az": "az2", "role": "compute"}
    assert inventory.loadbalancers["lb1"].socket == "/run/haproxy/admin.sock"
    assert inventory.known_hosts == str(tmp_path / "kh")


def test_host_config_files() -> None:
    spec = LabSpec(Path("/var/tmp/lab"), hosts=4, controllers=2, lbs=1, pid_namespace=True)
    lb, ctl1, ctl2 = spec.plan()[:3]

    haproxy = render_haproxy_config(lb, [ctl1, ctl2])
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in haproxy
    assert "stats socket ipv4@10.200.0.5:9999 level admin" in haproxy
    assert "option httpchk GET /health" in haproxy
    assert "default-server check inter 1s fall 2 rise 2" in haproxy
    assert "server ctl2 10.200.0.12:8080" in haproxy

    keys = LabKeys(*(Path(f"/var/tmp/lab/{n}") for n in ("c", "h", "ak", "kh")))
    sshd = render_sshd_config(ctl1.address, keys).splitlines()
    for line in (
        "ListenAddress 10.200.0.11",
        "HostKey /var/tmp/lab/h",
        "AuthorizedKeysFile /var/tmp/lab/ak",
        "UsePAM no",
        "StrictModes no",
        "MaxStartups 200:30:400",
        "PermitRootLogin prohibit-password",
        "AllowStreamLocalForwarding yes",
    ):
        assert line in sshd

    conf = render_host_conf(spec, lb, [ctl1])
    assert "PIDNS=1\n" in conf and "HAPROXY=1\n" in conf
    assert "AWAIT=/var/tmp/lab/hosts/ctl1\n" in conf
    assert "SERVICES=''\n" in conf
    assert upper_path(Path("/h"), "/usr/sbin/policy-rc.d") == Path("/h/upper/usr-sbin/policy-rc.d")
    assert upper_path(Path("/h"), "/var/lib/x") == Path("/h/upper/var-lib/x")
    with pytest.raises(ValueError, match="not in an overlaid tree"):
        upper_path(Path("/h"), "/usr/bin/x")


def test_state_round_trip_and_errors_name_the_file(tmp_path: Path) -> None:
    spec = LabSpec(tmp_path, hosts=3, controllers=1, lbs=1)
    state = LabState(spec=spec, phase=BOOTING, hosts=tuple(spec.plan()), keeper_pid=42)

    assert parse_state(render_state(state), "lab.json") == state
    with pytest.raises(FileFormatError, match=r"lab.json line 2: not valid JSON"):
        parse_state('{"version": 1,\n nope}', "lab.json")
    document = json.loads(render_state(state))
    del document["hosts"]
    with pytest.raises(FileFormatError, match="missing or malformed field"):
        parse_state(json.dumps(document), "lab.json")
