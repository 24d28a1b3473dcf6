"""`interlock lab up|down|status`: a fleet of real hosts on this machine to try interlock on."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from interlock.errors import UsageError
from interlock.lab.lab import Lab, UpReport, require_root
from interlock.lab.spec import (
    DEFAULT_DIR,
    DEFAULT_NAME,
    DEFAULT_SUBNET,
    SYSTEMD,
    LabHost,
    LabSpec,
)
from interlock.lab.status import LabStatus

UP_EPILOG = """\
examples:
  interlock lab up                          20 hosts: lb1, ctl1-ctl3, cmp1-cmp16
  interlock lab up --hosts 50 --controllers 3 --lbs 2
  interlock lab up --pid-namespace          killing a host's sshd then crashes the whole host
  interlock lab up --dir /var/tmp/lab2 --name lab2 --subnet 10.201.0.0/16   a second lab

Each host is a network namespace on a bridge with private overlays of /etc, /var/lib,
/var/log and /usr/sbin, tmpfs /run and /root, and its own sshd. Controllers run the sysv
service lab-api (an HTTP API on port 8080), lb hosts run haproxy in front of them (admin
socket /run/haproxy/admin.sock, TCP admin port 9999), computes run cron. The directory gets
inventory.yaml, an SSH key and a known_hosts file for the hosts. Needs root.
"""

DOWN_EPILOG = """\
examples:
  interlock lab down
  interlock lab down --dir /var/tmp/lab2 --name lab2

Kills every process in the lab's hosts and removes its namespaces, veths and bridge. Safe to
repeat, and it also cleans up after an `up` that crashed half way (it finds the lab's
namespaces and links by name when lab.json is incomplete).
"""

STATUS_EPILOG = """\
examples:
  interlock lab status
  interlock lab status --json | jq '.hosts[] | select(.sshd == null)'

Shows every host with its address, whether its processes run, its sshd's answer, the health
of its API (controllers) and the state of haproxy's servers (lb hosts).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "lab",
        help="build a lab of real hosts on this machine",
        description="Build, inspect and remove a lab of real hosts (network namespaces with "
        "sshd, an HTTP API behind haproxy, cron) on this machine.",
    )
    sub = group.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = sub.add_parser(
        "up",
        help="build the lab",
        description="Build a lab and wait until every host answers SSH, every API its health "
        "check and every haproxy sees all its servers UP.",
        epilog=UP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _location(up, subnet=True)
    up.add_argument("--hosts", type=int, default=20, metavar="N", help="hosts in all (20)")
    up.add_argument("--controllers", type=int, default=3, metavar="C", help="controllers (3)")
    up.add_argument("--lbs", type=int, default=1, metavar="L", help="haproxy hosts (1)")
    up.add_argument(
        "--pid-namespace",
        action="store_true",
        help="give each host its own PID namespace (its sshd is PID 1)",
    )
    up.add_argument(
        "--packages",
        action="store_true",
        help="give each host its own /usr, /opt, /var/cache and dpkg database, so apt-get "
        "install on a host changes that host only",
    )
    up.add_argument(
        "--systemd",
        type=int,
        default=0,
        metavar="S",
        help="how many hosts (load balancers first, then controllers, then computes) boot "
        "systemd from their own Debian root file system, built once and cached (0)",
    )
    up.add_argument(
        "--api-delay-ms",
        type=int,
        default=0,
        metavar="MS",
        help="work time of each API request (0)",
    )
    up.add_argument(
        "--etcd",
        type=int,
        default=0,
        metavar="N",
        help="run an etcd cluster of N members on the controllers (then computes), for "
        "--coordination (0)",
    )
    up.set_defaults(handler=_up)

    down = sub.add_parser(
        "down",
        help="remove the lab",
        description="Remove every process, namespace, link and mount of a lab.",
        epilog=DOWN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _location(down, subnet=False)
    down.set_defaults(handler=_down)

    status = sub.add_parser(
        "status",
        help="show the lab's hosts and their health",
        description="Show the hosts of a lab and whether each one answers.",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _location(status, subnet=False)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _location(parser: argparse.ArgumentParser, *, subnet: bool) -> None:
    parser.add_argument(
        "--dir",
        type=lab_directory,
        default=DEFAULT_DIR,
        help=f"lab directory (state, keys, inventory; default {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"prefix of the lab's namespaces and links (default {DEFAULT_NAME})",
    )
    if subnet:
        parser.add_argument(
            "--subnet",
            default=DEFAULT_SUBNET,
            metavar="CIDR",
            help=f"the lab's network (default {DEFAULT_SUBNET}; the bridge has its first address)",
        )


def lab_directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("give a directory, not an empty string")
    return Path(text)


def _existing(args: argparse.Namespace) -> Lab:
    """The lab down and status act on: its name checked (it selects namespaces and links to
    remove by prefix) and its directory there, before anything is looked at."""
    LabSpec(directory=args.dir, name=args.name)
    if not args.dir.is_dir():
        raise UsageError(f"--dir {args.dir}: no such directory")
    return Lab(args.dir, name=args.name)


def _up(args: argparse.Namespace) -> int:
    require_root()
    lab = Lab(args.dir, name=args.name, subnet=args.subnet)
    report = lab.up(
        hosts=args.hosts,
        controllers=args.controllers,
        lbs=args.lbs,
        pid_namespace=args.pid_namespace,
        api_delay_ms=args.api_delay_ms,
        package_overlays=args.packages,
        systemd=args.systemd,
        progress=lambda message: print(message, file=sys.stderr),
    )
    print(render_up(lab, report))
    if args.etcd:
        from interlock.lab import etcd

        try:
            url = etcd.start(lab, etcd.member_hosts(lab, args.etcd))
        except BaseException:
            lab.down()
            raise
        print(f"etcd: {args.etcd} members; use --coordination {url}")
    return 0


def _down(args: argparse.Namespace) -> int:
    require_root()
    report = _existing(args).down()
    if not report.found:
        print(f"no lab in {args.dir} (nothing named {args.name}-* either)")
        return 0
    print(
        f"lab down in {report.seconds:.1f} s: {report.processes_killed} processes, "
        f"{report.namespaces_removed} namespaces, {report.links_removed} links removed"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    require_root()
    lab = _existing(args)
    status = lab.status()
    if args.json:
        print(json.dumps(status_document(lab, status), indent=2))
    else:
        print(render_status(status))
    return 0 if status.healthy else 1


def _span(hosts: Sequence[LabHost]) -> str:
    if len(hosts) == 1:
        return f"{hosts[0].name} {hosts[0].address}"
    return f"{hosts[0].name}-{hosts[-1].name} {hosts[0].address}-{hosts[-1].address}"


def render_up(lab: Lab, report: UpReport) -> str:
    spec = report.state.spec
    hosts = report.state.hosts
    lines = [
        f"lab up in {report.seconds:.1f} s: {len(hosts)} hosts on bridge {spec.bridge} "
        f"({spec.subnet}, gateway {spec.gateway})"
        + (", one PID namespace per host" if spec.pid_namespace else "")
    ]
    roles = (
        ("lb", "lbs", "haproxy on :80, admin socket /run/haproxy/admin.sock and :9999"),
        ("controller", "controllers", "lab-api on :8080"),
        ("compute", "computes", "cron"),
    )
    for role, label, what in roles:
        members = [h for h in hosts if h.role == role]
        if members:
            lines.append(f"  {label:<12}{_span(members)}  ({what})")
    systemd = [h for h in hosts if h.kind == SYSTEMD]
    if systemd:
        lines.append(f"  {'systemd':<12}{_span(systemd)}  (systemd as PID 1, own Debian root)")
    first = hosts[0].name
    ssh = " ".join(lab.ssh_argv(first))
    lines += [
        f"inventory:   {lab.inventory_path}",
        f"ssh:         {ssh}",
        f"tear down:   interlock lab down --dir {lab.directory} --name {spec.name}",
    ]
    return "\n".join(lines)


def render_status(status: LabStatus) -> str:
    header = ("HOST", "ROLE", "ADDRESS", "PID", "PROCS", "SSHD", "API", "HAPROXY SERVERS")
    rows = [header]
    for host in status.hosts:
        api = "-" if host.api_healthy is None else ("ok" if host.api_healthy else "FAIL")
        if host.servers is None:
            servers = "-"
        else:
            servers = " ".join(f"{s.name}={s.status}" for s in host.servers) or "NO ANSWER"
        rows.append(
            (
                host.name,
                host.role,
                host.address,
                str(host.pid or "-"),
                "running" if host.running else "GONE",
                host.sshd or "NO ANSWER",
                api,
                servers,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    spec = status.state.spec
    verdict = "healthy" if status.healthy else "NOT healthy"
    lines.append(f"lab {spec.name} in {spec.directory} ({status.state.phase}): {verdict}")
    return "\n".join(lines)


def status_document(lab: Lab, status: LabStatus) -> dict[str, object]:
    spec = status.state.spec
    kinds = {h.name: h.kind for h in status.state.hosts}
    return {
        "directory": str(spec.directory),
        "name": spec.name,
        "phase": status.state.phase,
        "bridge": spec.bridge,
        "subnet": spec.subnet,
        "pid_namespace": spec.pid_namespace,
        "inventory": str(lab.inventory_path),
        "healthy": status.healthy,
        "hosts": [
            {
                "name": h.name,
                "role": h.role,
                "kind": kinds.get(h.name),
                "address": h.address,
                "pid": h.pid,
                "running": h.running,
                "sshd": h.sshd,
                "api_healthy": h.api_healthy,
                "servers": None if h.servers is None else [asdict(s) for s in h.servers],
            }
            for h in status.hosts
        ],
    }
