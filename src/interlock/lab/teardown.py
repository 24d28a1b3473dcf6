"""Removing a lab: every process, namespace, link and mount, also after a crashed `up`.

Processes are found three ways, so none escapes: by the network namespaces (named in lab.json
and found by the lab's name prefix), as children of the lab's keeper, and by the lab's overlay
upper directories in their mount table (which also finds a process whose namespace lost its name).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from interlock.errors import FileFormatError
from interlock.lab import network, processes
from interlock.lab.cgroup import lab_cgroup, remove_lab_cgroups
from interlock.lab.errors import LabError
from interlock.lab.image import KEEPER, hosts_root
from interlock.lab.inventory_file import INVENTORY_FILE
from interlock.lab.state import STATE_FILE, LabState, load_state

KILL_DEADLINE = 15.0


@dataclass(frozen=True)
class DownReport:
    found: bool
    processes_killed: int
    namespaces_removed: int
    links_removed: int
    seconds: float


def overlay_marker(directory: Path) -> str:
    """Text in /proc/PID/mountinfo of every process living in one of the lab's hosts."""
    return f"upperdir={hosts_root(directory)}/"


def load_state_quietly(directory: Path) -> LabState | None:
    try:
        return load_state(directory)
    except FileFormatError:
        return None  # unreadable state: teardown falls back to names


def is_keeper(pid: int) -> bool:
    return processes.alive(pid) and str(KEEPER) in processes.cmdline(pid)


def live_pids(state: LabState) -> list[int]:
    """Processes of the lab recorded in `state` that still run."""
    live = list(processes.members(network.netns_inodes(h.netns for h in state.hosts)))
    if state.keeper_pid is not None and is_keeper(state.keeper_pid):
        live.append(state.keeper_pid)
    return live


def teardown(
    directory: Path, name: str, keeper_process: subprocess.Popen[bytes] | None = None
) -> DownReport:
    """Remove the lab recorded in `directory`, or named `name` when nothing is recorded."""
    started = time.monotonic()
    state = load_state_quietly(directory)
    name = state.spec.name if state else name
    netns = set(network.netns_names(f"{name}-"))
    if state is not None:
        netns |= {h.netns for h in state.hosts if (network.NETNS_DIR / h.netns).exists()}
    keeper = state.keeper_pid if state else None
    if keeper is not None and not is_keeper(keeper):
        keeper = None
    killed = _kill_hosts(directory, sorted(netns), keeper, keeper_process)
    links = network.link_names(f"{name}-v")
    if network.link_exists(f"{name}-br"):
        links.append(f"{name}-br")
    network.run_batch(network.down_commands(sorted(netns), links), force=True)
    remaining = [n for n in netns if (network.NETNS_DIR / n).exists()]
    remaining += _remove_cgroups(name)
    remaining += [link for link in links if network.link_exists(link)]
    network.release_netns_dir()
    shutil.rmtree(hosts_root(directory), ignore_errors=True)
    lock = directory / f"{STATE_FILE}.lock"
    for file in (directory / STATE_FILE, lock, directory / INVENTORY_FILE):
        file.unlink(missing_ok=True)
    if remaining:
        raise LabError(f"could not remove: {', '.join(remaining)}")
    return DownReport(
        found=bool(state or netns or links),
        processes_killed=killed,
        namespaces_removed=len(netns),
        links_removed=len(links),
        seconds=time.monotonic() - started,
    )


def _remove_cgroups(name: str) -> list[str]:
    """The systemd hosts' cgroups; a killed task may take a moment to leave its cgroup."""
    deadline = time.monotonic() + 5
    while True:
        kept = remove_lab_cgroups(name)
        if not kept or time.monotonic() > deadline:
            return [f"cgroup {path}" for path in kept]
        time.sleep(0.05)


def _kill_hosts(
    directory: Path,
    netns: list[str],
    keeper: int | None,
    keeper_process: subprocess.Popen[bytes] | None,
) -> int:
    inodes = network.netns_inodes(netns)
    marker = overlay_marker(directory)
    killed: set[int] = set()

    def sweep() -> set[int]:
        targets = set(processes.members(inodes)) | set(processes.with_mount_option(marker))
        if keeper is not None:
            targets |= {p for p in processes.children(keeper) if processes.alive(p)}
        processes.kill_all(targets)
        killed.update(targets)
        return targets

    def sweep_until_empty() -> None:
        while sweep():
            if time.monotonic() > deadline:
                raise LabError(f"processes of the lab survive SIGKILL: {sorted(killed)}")
            time.sleep(0.02)

    deadline = time.monotonic() + KILL_DEADLINE
    if keeper is None:
        sweep_until_empty()
        return len(killed)
    # Frozen, the keeper starts nothing while its children die. The SIGTERM it finds on waking
    # tells it to start nothing more; at most a spawn it was in the middle of completes.
    processes.kill_all([keeper], signal.SIGSTOP)
    sweep_until_empty()
    processes.kill_all([keeper], signal.SIGTERM)
    processes.kill_all([keeper], signal.SIGCONT)
    # It reaps what it was the parent of and exits once nothing is left.
    while processes.alive(keeper) and time.monotonic() < deadline:
        sweep()
        time.sleep(0.02)
    if processes.alive(keeper):
        processes.kill_all([keeper])
    if keeper_process is not None and keeper_process.pid == keeper:
        keeper_process.wait()
    sweep_until_empty()
    return len(killed)


def leftovers(directory: Path, name: str, before: Mapping[int, int] | None = None) -> list[str]:
    """What of a lab still exists: namespaces and links by its name, processes in its hosts'
    mount namespaces, and processes of a `processes.snapshot` taken before `down` that still run.
    Empty after `down`."""
    found = [f"network namespace {n}" for n in network.netns_names(f"{name}-")]
    found += [f"link {n}" for n in network.link_names(f"{name}-")]
    found += [f"process {pid} still running" for pid in processes.survivors(before or {})]
    cgroup = lab_cgroup(name)
    if cgroup is not None and cgroup.exists():
        found.append(f"cgroup {cgroup}")
    for pid in processes.with_mount_option(overlay_marker(directory)):
        found.append(f"process {pid} ({' '.join(processes.cmdline(pid))}) holds lab overlays")
    return found
