"""An etcd cluster inside the lab: one member per chosen host, on the host's own address.

Each member is Debian's `etcd` started inside its host's namespaces (so `lab down` kills it with
the host), its data directory in the host's private tree, its log in the lab's logs. Members can
be killed and started again (same data) to take quorum away and give it back.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from interlock.host.atomic import write_atomic
from interlock.lab import network, processes
from interlock.lab.enter import HOST_ENV, enter_argv
from interlock.lab.errors import LabError
from interlock.lab.image import host_dir
from interlock.lab.lab import LOGS, Lab

CLIENT_PORT = 2379
PEER_PORT = 2380
ETCD_FILE = "etcd.json"
# Fast elections: a killed leader is replaced in about a second, which keeps tests short.
TUNING = ("--heartbeat-interval", "50", "--election-timeout", "500")


def members_file(lab: Lab) -> Path:
    return lab.directory / ETCD_FILE


def member_hosts(lab: Lab, count: int) -> list[str]:
    """Controllers first (etcd belongs to the control plane), then computes."""
    hosts = lab.state().hosts
    order = [h.name for h in hosts if h.role == "controller"]
    order += [h.name for h in hosts if h.role == "compute"]
    if count > len(order):
        raise LabError(f"--etcd {count}: the lab has only {len(order)} controller/compute hosts")
    return order[:count]


def member_argv(
    name: str,
    data_dir: Path,
    address: str,
    cluster: str,
    client_port: int = CLIENT_PORT,
    peer_port: int = PEER_PORT,
) -> list[str]:
    """Debian's etcd as one member of `cluster` (`name=http://address:peer,...`), new cluster."""
    return [
        _etcd(),
        "--name", name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", f"http://{address}:{client_port}",
        "--advertise-client-urls", f"http://{address}:{client_port}",
        "--listen-peer-urls", f"http://{address}:{peer_port}",
        "--initial-advertise-peer-urls", f"http://{address}:{peer_port}",
        "--initial-cluster", cluster,
        "--initial-cluster-state", "new",
    ]  # fmt: skip


def _argv(lab: Lab, host: str, cluster: str) -> list[str]:
    address = lab.state().host(host).address
    data_dir = host_dir(lab.directory, host) / "etcd"
    token = ("--initial-cluster-token", f"{lab.name}-etcd")
    return [*member_argv(host, data_dir, address, cluster), *token, *TUNING]


def _etcd() -> str:
    found = shutil.which("etcd", path="/usr/bin:/usr/sbin:/bin")
    if found is None:
        raise LabError("etcd not found: apt-get install --no-install-recommends etcd-server")
    return found


def start(lab: Lab, hosts: Sequence[str], timeout: float = 30.0) -> str:
    """Start a member on each host; returns the cluster's coordination URL once all are healthy."""
    state = lab.state()
    cluster = ",".join(f"{h}=http://{state.host(h).address}:{PEER_PORT}" for h in hosts)
    for host in hosts:
        shutil.rmtree(host_dir(lab.directory, host) / "etcd", ignore_errors=True)
    write_atomic(
        str(members_file(lab)),
        json.dumps({"hosts": list(hosts), "cluster": cluster}).encode(),
    )
    for host in hosts:
        _launch(lab, host, cluster)
    wait_healthy(lab, hosts, timeout)
    return url(lab)


def _launch(lab: Lab, host: str, cluster: str) -> None:
    log = (lab.directory / LOGS / f"{host}.etcd.log").open("ab")
    with log:
        subprocess.Popen(  # reaped by whoever outlives it; `lab down` kills it with the host
            enter_argv(
                lab.host_pid(host), lab.state().spec.pid_namespace, _argv(lab, host, cluster)
            ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=HOST_ENV,
            cwd="/",
            start_new_session=True,
        )


def _recorded(lab: Lab) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(members_file(lab).read_text())
    except (OSError, ValueError):
        raise LabError(f"no etcd in the lab at {lab.directory}: `lab up --etcd 3`") from None
    return data


def hosts_of(lab: Lab) -> list[str]:
    return [str(h) for h in _recorded(lab)["hosts"]]  # type: ignore[attr-defined]


def url(lab: Lab) -> str:
    state = lab.state()
    return "etcd://" + ",".join(f"{state.host(h).address}:{CLIENT_PORT}" for h in hosts_of(lab))


def member_pids(lab: Lab, host: str) -> list[int]:
    """The etcd processes running inside `host` (host-side PIDs)."""
    record = lab.state().host(host)
    inodes = network.netns_inodes([record.netns])
    return sorted(
        pid
        for pid in processes.members(inodes)
        if (argv := processes.cmdline(pid)) and argv[0].endswith("/etcd")
    )


def kill_member(lab: Lab, host: str) -> None:
    """SIGKILL the member on `host` (a crash: no goodbye to its peers)."""
    pids = member_pids(lab, host)
    if not pids:
        raise LabError(f"no etcd member runs on {host}")
    processes.kill_all(pids, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(processes.alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise LabError(f"etcd on {host} survived SIGKILL")
        time.sleep(0.02)


def restart_member(lab: Lab, host: str, timeout: float = 30.0) -> None:
    """Start the member on `host` again with its data (it rejoins the cluster)."""
    if member_pids(lab, host):
        raise LabError(f"etcd already runs on {host}")
    _launch(lab, host, str(_recorded(lab)["cluster"]))
    wait_healthy(lab, [host], timeout)


def healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{address}:{CLIENT_PORT}/health", timeout=1.0
        ) as answer:
            return bool(json.loads(answer.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def wait_healthy(lab: Lab, hosts: Sequence[str], timeout: float) -> None:
    state = lab.state()
    deadline = time.monotonic() + timeout
    waiting = list(hosts)
    while waiting:
        waiting = [h for h in waiting if not healthy(state.host(h).address)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            logs = lab.directory / LOGS
            raise LabError(
                f"etcd not healthy on {', '.join(waiting)} after {timeout:.0f}s "
                f"(see {logs}/<host>.etcd.log)"
            )
        time.sleep(0.1)
