"""A host's own file system: the overlay layers written before it boots, per role.

Every file a host needs at boot is placed in its overlay upper directories, so the host sees it at
its usual path (/etc/init.d/lab-api, /etc/haproxy/haproxy.cfg) while the machine's trees stay
untouched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from interlock.host.ledger import LEDGER_DIR
from interlock.lab.errors import LabError
from interlock.lab.haproxy import CONFIG_PATH as HAPROXY_CONFIG
from interlock.lab.haproxy import render_haproxy_config
from interlock.lab.spec import API_PORT, DPKG_DIR, OVERLAID_TREES, LabHost, LabSpec
from interlock.lab.sshd import SSHD_CONFIG, LabKeys, render_sshd_config

FILES = Path(__file__).with_name("files")
HOST_INIT = FILES / "host-init.sh"
KEEPER = FILES / "lab_keeper.py"
REBOOT_COMMAND = "/usr/sbin/lab-reboot"
BOOT_RECORD = "boot.json"


def layer_names(trees: Sequence[str]) -> dict[str, str]:
    """Overlaid tree -> name of its layer directory (/var/lib -> var-lib)."""
    return {tree: tree.strip("/").replace("/", "-") for tree in trees}


LAYERS = layer_names(OVERLAID_TREES)

# Start empty on every host whatever the machine holds there: opaque in the overlay.
PRIVATE_EMPTY_DIRS = ("/etc/policy-rc.d", LEDGER_DIR)
OPAQUE_XATTR = "trusted.overlay.opaque"

API_SERVICE = "lab-api"
API_CONFIG = "/etc/lab-api/lab-api.conf"
START_LEVELS = "2345"
STOP_LEVELS = "016"


def hosts_root(directory: Path) -> Path:
    return directory / "hosts"


def host_dir(directory: Path, host: str) -> Path:
    return hosts_root(directory) / host


def boot_record(directory: Path, host: str) -> Path:
    """Where the keeper records a PID-namespace host's init and namespace at each (re)start."""
    return host_dir(directory, host) / BOOT_RECORD


def render_reboot_command(record: Path) -> str:
    return (FILES / "lab-reboot").read_text(encoding="utf-8").replace("@RECORD@", str(record))


def dpkg_snapshot(directory: Path) -> Path:
    return hosts_root(directory) / "dpkg-snapshot"


def snapshot_dpkg(directory: Path, attempts: int = 50) -> Path:
    """Copy the machine's dpkg database for the hosts' package overlays, taken while no dpkg
    transaction is half-done on the machine (its updates/ directory is empty)."""
    target = dpkg_snapshot(directory)
    updates = Path(DPKG_DIR) / "updates"
    for _ in range(attempts):
        shutil.rmtree(target, ignore_errors=True)
        if not any(updates.iterdir()):
            shutil.copytree(DPKG_DIR, target, symlinks=True)
            if not any(updates.iterdir()) and not any((target / "updates").iterdir()):
                return target
        time.sleep(0.2)
    raise LabError(f"dpkg on this machine stayed busy ({updates} not empty): try again later")


def upper_path(hostdir: Path, path: str, layers: Mapping[str, str] = LAYERS) -> Path:
    """Where a file at `path` inside the host lives in its overlay upper directory."""
    target = PurePosixPath(path)
    for tree, layer in sorted(layers.items(), key=lambda item: -len(item[0])):
        if target.is_relative_to(tree):
            return hostdir / "upper" / layer / target.relative_to(tree)
    raise ValueError(f"{path} is not in an overlaid tree ({', '.join(layers)})")


def _put(
    hostdir: Path,
    path: str,
    data: str | bytes,
    mode: int = 0o644,
    layers: Mapping[str, str] = LAYERS,
) -> None:
    target = upper_path(hostdir, path, layers)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    target.write_bytes(data)
    target.chmod(mode)


def _link(hostdir: Path, path: str, points_to: str, layers: Mapping[str, str] = LAYERS) -> None:
    target = upper_path(hostdir, path, layers)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(points_to)


def render_etc_hosts(hosts: Sequence[LabHost]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{host.address}\t{host.name}" for host in hosts]
    return "\n".join(lines) + "\n"


def render_api_config(host: LabHost, delay_ms: int) -> str:
    return (
        "# Read by /etc/init.d/lab-api (shell syntax)\n"
        f"BIND={host.address}:{API_PORT}\n"
        f"DELAY_MS={delay_ms}\n"
        f"API_NAME={host.name}\n"
    )


def render_host_conf(spec: LabSpec, host: LabHost, awaited: Sequence[LabHost] = ()) -> str:
    services = {"controller": API_SERVICE, "compute": "cron"}.get(host.role, "")
    values = {
        "HOST": host.name,
        "ADDRESS": host.address,
        "PREFIXLEN": str(spec.network.prefixlen),
        "PIDNS": "1" if spec.pid_namespace else "0",
        "SERVICES": services,
        "HAPROXY": "1" if host.role == "lb" else "0",
        "AWAIT": " ".join(str(host_dir(spec.directory, h.name)) for h in awaited),
        "OVERLAYS": " ".join(
            f"{tree}:{layer}:{dpkg_snapshot(spec.directory) if tree == DPKG_DIR else tree}"
            for tree, layer in layer_names(spec.overlaid_trees).items()
        ),
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def build_image(
    spec: LabSpec, host: LabHost, hosts: Sequence[LabHost], keys: LabKeys, etc_hosts: str
) -> Path:
    """Write a fresh set of layers for `host` (any previous upper/work content is removed)."""
    hostdir = host_dir(spec.directory, host.name)
    shutil.rmtree(hostdir, ignore_errors=True)
    layers = layer_names(spec.overlaid_trees)
    for layer in layers.values():
        (hostdir / "upper" / layer).mkdir(parents=True)
        (hostdir / "work" / layer).mkdir(parents=True)
    for path in PRIVATE_EMPTY_DIRS:
        target = upper_path(hostdir, path, layers)
        target.mkdir(parents=True)
        os.setxattr(target, OPAQUE_XATTR, b"y")

    def put(path: str, data: str | bytes, mode: int = 0o644) -> None:
        _put(hostdir, path, data, mode, layers)

    def link(path: str, points_to: str) -> None:
        _link(hostdir, path, points_to, layers)

    put("/etc/hostname", f"{host.name}\n")
    put("/etc/hosts", etc_hosts)
    put(SSHD_CONFIG, render_sshd_config(host.address, keys))
    put("/usr/sbin/runlevel", (FILES / "runlevel").read_bytes(), 0o755)
    if spec.pid_namespace:
        record = boot_record(spec.directory, host.name)
        put(REBOOT_COMMAND, render_reboot_command(record), 0o755)
    if host.role == "controller":
        put("/usr/sbin/lab-api", (FILES / "lab_api.py").read_bytes(), 0o755)
        put("/etc/init.d/lab-api", (FILES / "lab-api.init").read_bytes(), 0o755)
        put(API_CONFIG, render_api_config(host, spec.api_delay_ms))
        for level in START_LEVELS:
            link(f"/etc/rc{level}.d/S01{API_SERVICE}", f"../init.d/{API_SERVICE}")
        for level in STOP_LEVELS:
            link(f"/etc/rc{level}.d/K01{API_SERVICE}", f"../init.d/{API_SERVICE}")
    awaited: list[LabHost] = []
    if host.role == "lb":
        awaited = [h for h in hosts if h.role == "controller"]
        put(HAPROXY_CONFIG, render_haproxy_config(host, awaited))
    conf = render_host_conf(spec, host, awaited)
    (hostdir / "host.conf").write_text(conf, encoding="utf-8")
    return hostdir
