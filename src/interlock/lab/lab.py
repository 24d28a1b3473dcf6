"""A lab of real hosts on this machine: build it, inspect it, run commands in it, tear it down.

lab = Lab(Path("/var/tmp/my-lab"), name="mylab", subnet="10.201.0.0/16")
lab.up(hosts=20, controllers=3, lbs=1)
try:
    lab.exec("ctl1", ["invoke-rc.d", "lab-api", "restart"])
finally:
    lab.down()
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from interlock.host.atomic import write_atomic
from interlock.lab import network, processes, systemd_host
from interlock.lab.enter import HOST_ENV, enter_argv, write_file_argv
from interlock.lab.errors import LabError
from interlock.lab.image import (
    HOST_INIT,
    KEEPER,
    boot_record,
    build_image,
    hosts_root,
    render_etc_hosts,
    snapshot_dpkg,
)
from interlock.lab.inventory_file import INVENTORY_FILE, render_inventory
from interlock.lab.readiness import wait_ready
from interlock.lab.rootfs import ensure_image
from interlock.lab.spec import (
    DEFAULT_DIR,
    DEFAULT_NAME,
    DEFAULT_SUBNET,
    SYSTEMD,
    LabHost,
    LabSpec,
)
from interlock.lab.sshd import CLIENT_KEY, KNOWN_HOSTS, ensure_keys
from interlock.lab.state import (
    BOOTING,
    STARTING,
    UP,
    LabState,
    load_state,
    save_state,
    state_path,
)
from interlock.lab.status import LabStatus, gather_status
from interlock.lab.teardown import DownReport, leftovers, live_pids, load_state_quietly, teardown

LOGS = "logs"
KEEPER_LOG = "keeper.log"

# Programs the lab runs, and the Debian package each comes from.
TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "start-stop-daemon": "dpkg",
    "ssh-keygen": "openssh-client",
    "sshd": "openssh-server",
}
ROLE_TOOLS = {"lb": {"haproxy": "haproxy"}, "compute": {"cron": "cron"}}

Progress = Callable[[str], None]

# Inside a systemd host that is late: its boot state, pending jobs, failed units, warnings.
BOOT_PROBLEMS = (
    "systemctl is-system-running; systemctl list-jobs --no-legend | head -n 5; "
    "systemctl --failed --no-legend; journalctl -b -p warning --no-pager -n 10 -q"
)


@dataclass(frozen=True)
class UpReport:
    state: LabState
    seconds: float
    phases: dict[str, float]


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates network namespaces, a bridge and mounts "
            "(run it as root, e.g. with sudo)"
        )


def require_tools(spec: LabSpec) -> None:
    needed = dict(TOOLS)
    roles = {host.role for host in spec.plan()}
    for role in roles:
        needed.update(ROLE_TOOLS.get(role, {}))
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = sorted({pkg for tool, pkg in needed.items() if shutil.which(tool, path=path) is None})
    if missing:
        raise LabError(
            f"the lab needs programs from these Debian packages: {', '.join(missing)} "
            f"(apt-get install --no-install-recommends {' '.join(missing)})"
        )


class Lab:
    """One lab, found by its directory; its name prefixes every namespace and link it creates."""

    def __init__(
        self,
        directory: Path | str = DEFAULT_DIR,
        name: str = DEFAULT_NAME,
        subnet: str = DEFAULT_SUBNET,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.name = name
        self.subnet = subnet
        self._keeper: subprocess.Popen[bytes] | None = None

    # Files callers use.
    @property
    def inventory_path(self) -> Path:
        return self.directory / INVENTORY_FILE

    @property
    def client_key(self) -> Path:
        return self.directory / CLIENT_KEY

    @property
    def known_hosts(self) -> Path:
        return self.directory / KNOWN_HOSTS

    def state(self) -> LabState:
        state = load_state(self.directory)
        if state is None:
            raise LabError(f"no lab in {self.directory} (no lab.json): start one with `lab up`")
        return state

    def ssh_argv(self, host: str, argv: Sequence[str] = ()) -> list[str]:
        """An OpenSSH client command logging into `host` with the lab's key and known_hosts."""
        address = self.state().host(host).address
        return [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=5",
            "-i", str(self.client_key),
            f"root@{address}",
            *argv,
        ]  # fmt: skip

    # Building.
    def up(
        self,
        hosts: int = 20,
        controllers: int = 3,
        lbs: int = 1,
        pid_namespace: bool = False,
        api_delay_ms: int = 0,
        package_overlays: bool = False,
        systemd: int = 0,
        ready_timeout: float | None = None,
        progress: Progress | None = None,
    ) -> UpReport:
        """Build the lab and return once every sshd, API and haproxy backend answers.

        With `package_overlays`, each host also has its own /usr, /opt, /var/cache and dpkg
        database, so `apt-get install` on a host changes that host only.

        The first `systemd` hosts (load balancers first, then controllers, then computes) boot
        systemd from their own Debian root file system (built once and cached, see `rootfs`);
        they are ready once systemd reports the boot finished.

        On failure everything created so far is torn down again and the error names the host
        and quotes its log.
        """
        require_root()
        spec = LabSpec(
            directory=self.directory,
            name=self.name,
            subnet=self.subnet,
            hosts=hosts,
            controllers=controllers,
            lbs=lbs,
            pid_namespace=pid_namespace,
            api_delay_ms=api_delay_ms,
            package_overlays=package_overlays,
            systemd=systemd,
        )
        require_tools(spec)
        say = progress or (lambda message: None)
        started = time.monotonic()
        self._refuse_collisions(spec)
        try:
            # systemd hosts boot a whole init each: on a busy machine that takes its time.
            default_timeout = 30.0 + 0.2 * hosts + (30.0 + 1.0 * systemd if systemd else 0.0)
            state = self._build(spec, say, started, ready_timeout or default_timeout)
        except BaseException as exc:
            try:
                self.down()
            except Exception as cleanup:  # noqa: BLE001 - the first error is the one to report
                exc.add_note(f"tearing the half-built lab down failed too: {cleanup}")
            raise
        return UpReport(state, time.monotonic() - started, state.timings)

    def _refuse_collisions(self, spec: LabSpec) -> None:
        previous = load_state_quietly(self.directory)
        if previous is not None:
            if live_pids(previous):
                raise LabError(
                    f"a lab is already running from {self.directory}: "
                    f"`interlock lab down --dir {self.directory}` first"
                )
            self.down()  # leftovers of a crashed run
        if network.link_exists(spec.bridge) or network.netns_names(spec.netns_prefix):
            raise LabError(
                f"interfaces or namespaces named {spec.name}-* exist but {self.directory} does "
                f"not record them: another lab named {spec.name!r} runs from another directory "
                f"(pick another --name), or a run crashed before writing its state "
                f"(`interlock lab down --dir {self.directory} --name {spec.name}` removes them)"
            )
        overlaps = network.overlapping_routes(spec.subnet, spec.bridge)
        if overlaps:
            raise LabError(
                f"subnet {spec.subnet} overlaps routes already on this machine "
                f"({'; '.join(overlaps)}): pick another --subnet"
            )

    def _build(self, spec: LabSpec, say: Progress, started: float, timeout: float) -> LabState:
        timings: dict[str, float] = {}
        mark = started
        plan = spec.plan()
        self.directory.mkdir(parents=True, exist_ok=True)
        state = LabState(spec=spec, phase=STARTING, hosts=tuple(plan), created=time.time())
        save_state(state)  # before any namespace exists, so `down` can find everything

        keys = ensure_keys(self.directory, spec.subnet)
        shutil.rmtree(hosts_root(self.directory), ignore_errors=True)
        logs = self.directory / LOGS
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        etc_hosts = render_etc_hosts(plan)
        if spec.package_overlays:
            snapshot_dpkg(self.directory)
        image = ensure_image() if spec.systemd else None
        if image is not None and image.built:
            mark, timings["image"] = time.monotonic(), time.monotonic() - mark
            say(f"built the systemd hosts' Debian image in {image.seconds:.1f}s")
        for host in plan:
            if host.kind == SYSTEMD and image is not None:
                systemd_host.build_layer(spec, host, plan, keys, etc_hosts, image.root)
            else:
                build_image(spec, host, plan, keys, etc_hosts)
        write_atomic(
            str(self.inventory_path),
            render_inventory(plan, keys.client_key, keys.known_hosts).encode(),
        )
        mark, timings["files"] = time.monotonic(), time.monotonic() - mark

        network.run_batch(network.up_commands(spec, plan))
        mark, timings["network"] = time.monotonic(), time.monotonic() - mark
        gateway = f"{spec.gateway}/{spec.network.prefixlen}"
        say(f"network: bridge {spec.bridge} {gateway}, {len(plan)} namespaces")

        state = self._spawn(state, logs)
        mark, timings["spawn"] = time.monotonic(), time.monotonic() - mark
        say(f"started {len(plan)} hosts, waiting for sshd, APIs and haproxy")

        deadline = time.monotonic() + timeout
        systemd_hosts = [h for h in state.hosts if h.kind == SYSTEMD]
        try:
            asyncio.run(wait_ready(state, logs, deadline))
            self._wait_booted(systemd_hosts, deadline)
        except LabError as exc:
            for note in self._boot_problems(systemd_hosts):
                exc.add_note(note)
            raise
        timings["ready"] = time.monotonic() - mark
        state = replace(state, phase=UP, timings=timings)
        save_state(state)
        return state

    def _spawn(self, state: LabState, logs: Path) -> LabState:
        spec = state.spec
        keeper = subprocess.Popen(
            [sys.executable, "-I", str(KEEPER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(logs / KEEPER_LOG).open("ab"),
            cwd="/",
            start_new_session=True,  # a Ctrl-C of `lab up` must not take the hosts with it
        )
        self._keeper = keeper
        state = replace(state, keeper_pid=keeper.pid)
        save_state(state)
        request = {
            "env": HOST_ENV,
            "state": str(state_path(spec.directory)),
            "hosts": [
                {
                    "name": host.name,
                    "argv": launcher_argv(spec, host),
                    "log": str(logs / f"{host.name}.log"),
                    **launch_record(spec, host),
                }
                for host in state.hosts
            ],
        }
        assert keeper.stdin is not None and keeper.stdout is not None
        keeper.stdin.write(json.dumps(request).encode())
        keeper.stdin.close()
        reply = keeper.stdout.readline()
        keeper.stdout.close()
        try:
            started: dict[str, object] = json.loads(reply)
        except json.JSONDecodeError:
            raise LabError(
                f"the lab keeper did not start the hosts; see {logs / KEEPER_LOG}"
            ) from None
        hosts = []
        for host in state.hosts:
            pid = started.get(host.name)
            if not isinstance(pid, int):
                raise LabError(f"{host.name}: could not start: {pid}")
            hosts.append(replace(host, pid=pid, launcher_pid=pid))
        hosts = self._find_namespace_inits(
            hosts, lambda host: spec.pid_namespace or host.kind == SYSTEMD
        )
        state = replace(state, phase=BOOTING, hosts=tuple(hosts))
        save_state(state)
        return state

    @staticmethod
    def _find_namespace_inits(
        hosts: list[LabHost], has_pid_namespace: Callable[[LabHost], bool]
    ) -> list[LabHost]:
        """With a PID namespace, `unshare --fork` runs the host's init as its child: record that."""
        deadline = time.monotonic() + 10
        found: dict[str, int] = {h.name: h.pid for h in hosts if not has_pid_namespace(h) and h.pid}
        while len(found) < len(hosts):
            for host in hosts:
                if host.name not in found and host.launcher_pid is not None:
                    # Only a child in a new PID namespace is the init (a launcher script may
                    # run short-lived helpers first).
                    outer = processes.pid_namespace(host.launcher_pid)
                    kids = [
                        kid
                        for kid in processes.children(host.launcher_pid)
                        if processes.pid_namespace(kid) not in (None, outer)
                    ]
                    if kids:
                        found[host.name] = kids[0]
                    elif not processes.alive(host.launcher_pid):
                        raise LabError(f"{host.name}: its launcher exited before booting the host")
            if time.monotonic() > deadline:
                missing = sorted(h.name for h in hosts if h.name not in found)
                raise LabError(f"no PID-namespace init appeared for: {', '.join(missing)}")
            if len(found) < len(hosts):
                time.sleep(0.01)
        return [replace(host, pid=found[host.name]) for host in hosts]

    def _wait_booted(self, hosts: Sequence[LabHost], deadline: float) -> None:
        """Wait until systemd on each host has finished booting (running, or degraded)."""
        for host in hosts:
            left = max(deadline - time.monotonic(), 1.0)
            try:
                result = self.exec(
                    host.name, ["systemctl", "is-system-running", "--wait"], timeout=left
                )
            except subprocess.TimeoutExpired:
                raise LabError(f"{host.name}: systemd did not finish booting in time") from None
            answer = result.stdout.decode(errors="replace").strip()
            if answer not in ("running", "degraded"):
                raise LabError(f"{host.name}: systemd did not finish booting: {answer}")

    def _boot_problems(self, hosts: Sequence[LabHost], limit: int = 3) -> list[str]:
        """What systemd says on hosts that did not finish booting (their journal, not the log)."""
        found: list[str] = []
        for host in hosts:
            if len(found) >= limit:
                break
            try:
                result = self.exec(host.name, ["sh", "-c", BOOT_PROBLEMS], timeout=10)
            except (LabError, subprocess.TimeoutExpired) as exc:
                found.append(f"{host.name}: {exc}")
                continue
            text = result.stdout.decode(errors="replace")
            if not text.startswith("running\n"):
                found.append(f"--- {host.name}: systemd says\n{text[-2000:]}")
        return found

    # Tearing down.
    def down(self) -> DownReport:
        """Remove every process, namespace, link and mount of this lab; safe to repeat.

        Works from lab.json when there is one and also by name, so a run that crashed before
        recording everything is still cleaned up.
        """
        require_root()
        keeper, self._keeper = self._keeper, None
        return teardown(self.directory, self.name, keeper)

    def leftovers(self, before: Mapping[int, int] | None = None) -> list[str]:
        """What of this lab still exists (see `teardown.leftovers`); empty after `down`."""
        return leftovers(self.directory, self.name, before)

    # Inside the hosts.
    def host_pid(self, host: str) -> int:
        """A live host-side PID inside `host` (its sshd, or any process left there)."""
        record = self.state().host(host)
        inodes = network.netns_inodes([record.netns])
        members = processes.members(inodes)
        if record.pid is not None and record.pid in members:
            return record.pid
        if not members:
            raise LabError(f"lab host {host} is not running")
        return min(members)

    def processes(self) -> dict[int, str]:
        """Every live process inside the lab's hosts: host-side pid -> host name."""
        state = self.state()
        by_netns = {h.netns: h.name for h in state.hosts}
        inodes = network.netns_inodes(by_netns)
        return {pid: by_netns[ns] for pid, ns in processes.members(inodes).items()}

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `argv` inside `host` (its mounts, hostname, network and PID view) without SSH."""
        state = self.state()
        pid = self.host_pid(host)
        kind = state.host(host).kind
        result = subprocess.run(
            enter_argv(pid, state.spec.pid_namespace or kind == SYSTEMD, argv, kind),
            input=input,
            capture_output=True,
            timeout=timeout,
            env=HOST_ENV,
            cwd="/",
            check=False,
        )
        if check and result.returncode != 0:
            raise LabError(
                f"{host}: {' '.join(argv)} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result

    def write_host_file(self, host: str, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Atomically write `path` as `host` sees it (parent directories are created)."""
        if not path.startswith("/"):
            raise LabError(f"{path!r}: a host file path must be absolute")
        payload = data.encode() if isinstance(data, str) else data
        self.exec(host, write_file_argv(path, mode), input=payload, check=True)

    def read_host_file(self, host: str, path: str) -> bytes:
        return self.exec(host, ["cat", "--", path], check=True).stdout

    # Looking.
    def status(self) -> LabStatus:
        return asyncio.run(gather_status(self.state()))


def launch_record(spec: LabSpec, host: LabHost) -> dict[str, str]:
    """How the keeper finds a host's init (the launcher's child in a new PID namespace, or the
    launcher itself), and where it records each (re)start of it."""
    if not spec.pid_namespace and host.kind != SYSTEMD:
        return {"init": "self"}
    return {"init": "child", "record": str(boot_record(spec.directory, host.name))}


def launcher_argv(spec: LabSpec, host: LabHost) -> list[str]:
    """The host's first process: enter its network namespace, unshare the rest, boot."""
    hostdir = str(hosts_root(spec.directory) / host.name)
    if host.kind == SYSTEMD:
        script = str(systemd_host.BOOT_SCRIPT)
        return ["/bin/sh", script, hostdir]
    pid_ns = ["--pid", "--fork", "--kill-child"] if spec.pid_namespace else []
    return [
        _which("ip"),
        "netns", "exec", host.netns,
        _which("unshare"), "--mount", "--uts", "--propagation", "private", *pid_ns,
        "/bin/sh", str(HOST_INIT), str(hosts_root(spec.directory) / host.name),
    ]  # fmt: skip


def _which(tool: str) -> str:
    found = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise LabError(f"{tool} not found")
    return found
