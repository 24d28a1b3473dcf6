"""A systemd lab host's own layer: what it has beyond the Debian image, written before it boots.

The host's root file system is an overlay: the shared image below, this per-host directory above
(wiped at every `up`). Its role decides which units it runs: the lab API as `lab-api.service` on
controllers, Debian's haproxy.service on load balancers, cron (enabled in the image) everywhere.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from interlock.lab.cgroup import host_cgroup
from interlock.lab.errors import LabError
from interlock.lab.haproxy import CONFIG_PATH as HAPROXY_CONFIG
from interlock.lab.haproxy import render_haproxy_config
from interlock.lab.image import FILES, host_dir
from interlock.lab.spec import API_PORT, LabHost, LabSpec
from interlock.lab.sshd import LabKeys, render_sshd_config

BOOT_SCRIPT = FILES / "systemd-host.sh"

API_UNIT = "lab-api.service"
API_PROGRAM = "/usr/local/sbin/lab-api"
API_PIDFILE = "/run/lab-api.pid"
WANTS = "/etc/systemd/system/multi-user.target.wants"
# The lab's keys as the host sees them: copies in its own layer, so the lab directory stays out
# of the host's mount table.
HOST_KEY = "/etc/ssh/lab_host_ed25519_key"
AUTHORIZED_KEYS = "/etc/ssh/lab_authorized_keys"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/interlock-lab.conf"
PRIVATE_EMPTY_DIRS = ("/etc/policy-rc.d", "/var/lib/policy-rc.d")


def render_api_unit(host: LabHost, delay_ms: int) -> str:
    command = shlex.join(
        [
            "/usr/bin/python3",
            API_PROGRAM,
            "--bind", f"{host.address}:{API_PORT}",
            "--delay-ms", str(delay_ms),
            "--pidfile", API_PIDFILE,
            "--name", host.name,
            "--on-stop", "drop",
        ]
    )  # fmt: skip
    return (
        "[Unit]\n"
        "Description=Lab HTTP API service\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        f"ExecStartPre=/bin/rm -f {API_PIDFILE}\n"
        f"ExecStart={command}\n"
        # The API writes its pidfile once it listens: `active` then means serving.
        f"ExecStartPost=/bin/sh -c 'until [ -s {API_PIDFILE} ]; do sleep 0.05; done'\n"
        "TimeoutStartSec=10\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def render_host_conf(spec: LabSpec, host: LabHost, image: Path) -> str:
    cgroup = host_cgroup(spec.name, host.name)
    if cgroup is None:
        raise LabError("systemd lab hosts need the cgroup2 hierarchy (no /sys/fs/cgroup/unified)")
    values = {
        "HOST": host.name,
        "NETNS": host.netns,
        "ADDRESS": host.address,
        "PREFIXLEN": str(spec.network.prefixlen),
        "IMAGE": str(image),
        "CGROUP": str(cgroup),
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def build_layer(
    spec: LabSpec,
    host: LabHost,
    hosts: Sequence[LabHost],
    keys: LabKeys,
    etc_hosts: str,
    image: Path,
) -> Path:
    """Write a fresh upper layer for `host` (anything from a previous run is removed)."""
    hostdir = host_dir(spec.directory, host.name)
    shutil.rmtree(hostdir, ignore_errors=True)
    upper = hostdir / "upper"
    (hostdir / "work").mkdir(parents=True)
    upper.mkdir()

    def put(path: str, data: str | bytes, mode: int = 0o644) -> None:
        target = upper / PurePosixPath(path).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def enable(unit: str, points_to: str) -> None:
        link = upper / PurePosixPath(WANTS).relative_to("/") / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(points_to)

    inside = LabKeys(
        client_key=keys.client_key,
        host_key=Path(HOST_KEY),
        authorized_keys=Path(AUTHORIZED_KEYS),
        known_hosts=keys.known_hosts,
    )
    put("/etc/hostname", f"{host.name}\n")
    put("/etc/hosts", etc_hosts)
    # A drop-in, so Debian's own sshd_config stays as shipped and a reinstall of openssh-server
    # asks nothing about it; Debian's file includes the drop-ins first, and the first value wins.
    dropin = render_sshd_config(host.address, inside).splitlines(keepends=True)
    put(SSHD_DROPIN, "".join(line for line in dropin if not line.startswith("Subsystem ")))
    put(HOST_KEY, keys.host_key.read_bytes(), 0o600)
    put(AUTHORIZED_KEYS, keys.authorized_keys.read_bytes())
    for directory in PRIVATE_EMPTY_DIRS:
        (upper / PurePosixPath(directory).relative_to("/")).mkdir(parents=True, exist_ok=True)
    if host.role == "controller":
        put(API_PROGRAM, (FILES / "lab_api.py").read_bytes(), 0o755)
        put(f"/etc/systemd/system/{API_UNIT}", render_api_unit(host, spec.api_delay_ms))
        enable(API_UNIT, f"/etc/systemd/system/{API_UNIT}")
    if host.role == "lb":
        controllers = [h for h in hosts if h.role == "controller"]
        put(HAPROXY_CONFIG, render_haproxy_config(host, controllers))
        enable("haproxy.service", "/lib/systemd/system/haproxy.service")
    (hostdir / "host.conf").write_text(render_host_conf(spec, host, image), encoding="utf-8")
    return hostdir
