"""Fleet status on lab hosts, timed next to parallel-ssh and ansible running the same probe.

    .venv/bin/python bench/fleet_status.py [--hosts 50 200] [--runs 3] [--window 24]

Needs root (it builds labs). For each size it builds a throw-away lab, puts two event files on
every host (one for a running service, so the start-time reads happen too), then times, at the
same window and interleaved run by run so that load from elsewhere hits every tool alike:

- interlock: `gather_status` (library call, asyncssh), and the `interlock fleet status` process;
- parallel-ssh (Debian's pssh) running the same probe script, with OpenSSH's default key
  exchange and with `KexAlgorithms=curve25519-sha256` (its fastest here);
- `ansible -m shell` with the same probe, tuned as a careful operator would (pipelining, no
  interpreter discovery, curve25519), host keys checked against the lab's known_hosts.

It also measures the CPU floor: fresh SSH sessions per second on this machine (asyncssh, a new
connection and one `true` per host), at the tools' window (like for like: the goal is interlock
at >= 0.85 of it) and at window 64 (the figure earlier runs quoted). parallel-ssh is installed
with apt-get when missing; ansible-core goes into its own venv (default
/var/tmp/interlock-bench/ansible-venv, kept for later runs). Every lab is torn down, also on
errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from interlock.facts import ledger as ledger_fact
from interlock.fleet.inventory import Host
from interlock.fleet.inventory_file import load_inventory
from interlock.fleet.status import gather_status
from interlock.fleet.transport import SshTransport, fan_out
from interlock.host.ledger import DeferredEvent, render_event
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab

ANSIBLE_VENV = Path("/var/tmp/interlock-bench/ansible-venv")
FAST_KEX = "KexAlgorithms=curve25519-sha256"
MARKER = "@@bench-probe"
FLOOR_WINDOW = 64
EVENTS_PER_HOST = 2

INTERLOCK = "interlock fleet status (library)"
INTERLOCK_CLI = "interlock fleet status (process)"
PSSH_FAST = "parallel-ssh, curve25519"
PSSH_DEFAULT = "parallel-ssh, default kex"
ANSIBLE = "ansible -m shell"


@dataclass
class Sample:
    tool: str
    hosts: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class Floors:
    """Fresh SSH sessions per second running `true`: at the tools' window and at window 64."""

    same: float
    wide: float


@dataclass(frozen=True)
class Setup:
    """One lab and the files each tool needs to reach it."""

    lab: Lab
    hosts: list[Host]
    work: Path
    pssh_hosts: Path
    ansible_inventory: Path


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- tools ------------------------------------------------------------------------------


def ensure_pssh() -> str:
    found = shutil.which("parallel-ssh")
    if found:
        return found
    say("installing parallel-ssh (Debian package pssh)")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "pssh"]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=True)
        subprocess.run(install, capture_output=True, check=True)
    found = shutil.which("parallel-ssh")
    if found is None:
        raise SystemExit("parallel-ssh is still missing after installing pssh")
    return found


def ensure_ansible(venv: Path) -> Path:
    ansible = venv / "bin" / "ansible"
    if not ansible.exists():
        say(f"installing ansible-core into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "ansible-core"],
            check=True,
            capture_output=True,
        )
    return ansible


# --- the lab ----------------------------------------------------------------------------


def seed_events(lab: Lab, names: Sequence[str]) -> None:
    """Two events per host: one from the gate for cron (which runs on computes), one a charm's."""
    now = int(time.time())
    gate = render_event(
        DeferredEvent("cron", "restart", "Package update", now, "interlock", "interlock")
    )
    charm = (
        "{action: restart, policy_requestor_name: neutron-gateway, policy_requestor_type: charm,"
        "\n  reason: Package update, service: openvswitch-switch, timestamp: 1619175335}\n"
    )

    def seed(name: str) -> None:
        lab.write_host_file(name, "/var/lib/policy-rc.d/interlock-bench-cron.deferred", gate)
        lab.write_host_file(name, "/var/lib/policy-rc.d/charm-bench-ovs.deferred", charm)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(seed, names))


def write_tool_files(lab: Lab, hosts: list[Host], work: Path) -> tuple[Path, Path]:
    pssh_hosts = work / "pssh-hosts"
    pssh_hosts.write_text("".join(f"{h.user}@{h.address}:{h.port}\n" for h in hosts))
    ini = work / "ansible-inventory.ini"
    lines = ["[lab]"]
    lines += [f"{h.name} ansible_host={h.address} ansible_port={h.port}" for h in hosts]
    lines += [
        "[lab:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={lab.client_key}",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    ini.write_text("\n".join(lines) + "\n")
    return pssh_hosts, ini


# --- measurements -----------------------------------------------------------------------


def run_interlock(setup: Setup, window: int) -> None:
    async def main() -> None:
        transport = SshTransport.for_inventory(load_inventory(setup.lab.inventory_path))
        try:
            status = await gather_status(setup.hosts, transport, window=window)
        finally:
            await transport.close()
        events = sum(len(debt.events) for debt in status.hosts)
        if status.unreachable or events != EVENTS_PER_HOST * len(setup.hosts):
            raise SystemExit(f"interlock: {status.unreachable[:3]}, {events} events")

    asyncio.run(main())


def run_interlock_cli(setup: Setup, window: int) -> None:
    argv = [sys.executable, "-m", "interlock.cli.main", "fleet", "status"]
    argv += ["-i", str(setup.lab.inventory_path), "--window", str(window), "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or result.stdout.count('"service": "cron"') != len(setup.hosts):
        raise SystemExit(f"interlock fleet status failed: {result.stderr[-500:]}")


def probe_command() -> str:
    """The same probe interlock runs, as one shell command line for the other tools."""
    return shlex.join(ledger_fact.command(MARKER))


def run_pssh(pssh: str, setup: Setup, window: int, kex: str | None, run: int) -> None:
    outdir = setup.work / f"pssh-out-{kex is not None}-{run}"
    argv = [pssh, "-h", str(setup.pssh_hosts), "-p", str(window), "-t", "120"]
    argv += ["-o", str(outdir), "-e", str(outdir) + "-err"]
    argv += ["-x", f"-F /dev/null -i {setup.lab.client_key}"]
    argv += ["-O", "BatchMode=yes", "-O", "StrictHostKeyChecking=yes"]
    argv += ["-O", f"UserKnownHostsFile={setup.lab.known_hosts}"]
    if kex is not None:
        argv += ["-O", kex]
    result = subprocess.run([*argv, probe_command()], capture_output=True, text=True, check=False)
    outputs = [p.read_text() for p in outdir.iterdir()] if outdir.is_dir() else []
    complete = sum(1 for text in outputs if f"{MARKER} clock" in text)
    if result.returncode != 0 or complete != len(setup.hosts):
        raise SystemExit(f"parallel-ssh: {complete} outputs, {result.stdout[-500:]}")


def ansible_env(setup: Setup) -> dict[str, str]:
    home = setup.work / "ansible-home"
    ssh_args = [
        "-F /dev/null",
        "-o ControlMaster=no",  # one session per host with pipelining: nothing to multiplex
        "-o BatchMode=yes",
        "-o StrictHostKeyChecking=yes",
        f"-o UserKnownHostsFile={setup.lab.known_hosts}",
        f"-o {FAST_KEX}",
    ]
    return {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": " ".join(ssh_args),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
    }


def run_ansible(ansible: Path, setup: Setup, window: int, limit: str = "all") -> None:
    # The probe travels base64-encoded: ansible templates its arguments, and the probe's
    # braces and dollars must reach the host untouched.
    encoded = base64.b64encode(probe_command().encode()).decode()
    command = f"echo {encoded} | base64 -d | sh"
    argv = [str(ansible), limit, "-i", str(setup.ansible_inventory), "-m", "shell"]
    argv += ["-a", command, "-f", str(window), "-o"]
    result = subprocess.run(
        argv, capture_output=True, text=True, env=ansible_env(setup), check=False
    )
    expected = len(setup.hosts) if limit == "all" else 1
    done = sum(1 for line in result.stdout.splitlines() if f"{MARKER} clock" in line)
    if result.returncode != 0 or done != expected:
        raise SystemExit(f"ansible: {done} of {expected} hosts: {result.stdout[-800:]}")


def sessions_per_second(hosts: list[Host], known_hosts: str, window: int) -> float:
    """Fresh SSH sessions this machine completes per second: connect, run `true`, close."""

    async def main() -> float:
        transport = SshTransport(known_hosts=known_hosts)
        started = time.perf_counter()
        try:
            outcomes = await fan_out(hosts, lambda h: transport.run(h, ["true"]), window=window)
        finally:
            await transport.close()
        elapsed = time.perf_counter() - started
        failed = [o for o in outcomes if not o.ok or (o.value and not o.value.ok)]
        if failed:
            raise SystemExit(f"floor run: {len(failed)} hosts failed: {failed[0].reason}")
        return len(hosts) / elapsed

    return asyncio.run(main())


# --- one size ---------------------------------------------------------------------------


def bench_size(
    size: int, runs: int, window: int, pssh: str, ansible: Path | None, work: Path
) -> tuple[list[Sample], Floors]:
    with running_lab(work / "lab", hosts=size, controllers=2, lbs=1) as lab:
        inventory = load_inventory(lab.inventory_path)
        hosts = inventory.select()
        seed_events(lab, [h.name for h in hosts])
        pssh_hosts, ini = write_tool_files(lab, hosts, work)
        setup = Setup(lab, hosts, work, pssh_hosts, ini)
        tools: dict[str, Callable[[int], None]] = {
            INTERLOCK: lambda run: run_interlock(setup, window),
            INTERLOCK_CLI: lambda run: run_interlock_cli(setup, window),
            PSSH_FAST: lambda run: run_pssh(pssh, setup, window, f"{FAST_KEX}", run),
            PSSH_DEFAULT: lambda run: run_pssh(pssh, setup, window, None, run),
        }
        if ansible is not None:
            run_ansible(ansible, setup, window, limit=hosts[0].name)  # warm ansible's caches
            tools[ANSIBLE] = lambda run: run_ansible(ansible, setup, window)
        run_interlock(setup, window)  # warm imports and key loading
        samples = {tool: Sample(tool, size) for tool in tools}
        same: list[float] = []
        wide: list[float] = []
        for run in range(runs):
            for tool, go in tools.items():
                started = time.perf_counter()
                go(run)
                seconds = time.perf_counter() - started
                samples[tool].seconds.append(seconds)
                say(f"{size} hosts, run {run + 1}/{runs}: {tool}: {seconds:.2f} s")
            same.append(sessions_per_second(hosts, str(lab.known_hosts), window))
            wide.append(sessions_per_second(hosts, str(lab.known_hosts), FLOOR_WINDOW))
        return list(samples.values()), Floors(statistics.median(same), statistics.median(wide))


# --- report -----------------------------------------------------------------------------


def report(results: dict[int, tuple[list[Sample], Floors]], window: int, runs: int) -> str:
    lines = [
        f"fleet status probe, window {window}, median of {runs} runs "
        f"({os.cpu_count()} CPUs, load average at the end "
        f"{os.getloadavg()[0]:.1f})",
        "",
        f"{'hosts':>5}  {'tool':<34} {'median s':>9} {'hosts/s':>8}  runs (s)",
    ]
    summary = []
    for size, (samples, floors) in results.items():
        by_tool = {s.tool: s for s in samples}
        for sample in samples:
            each = " ".join(f"{s:.2f}" for s in sample.seconds)
            lines.append(
                f"{size:>5}  {sample.tool:<34} {sample.median:>9.2f} "
                f"{size / sample.median:>8.0f}  {each}"
            )
        for floor, at in ((floors.same, window), (floors.wide, FLOOR_WINDOW)):
            lines.append(
                f"{size:>5}  {'CPU floor: fresh SSH sessions/s':<34} {size / floor:>9.2f} "
                f"{floor:>8.0f}  (asyncssh, `true`, window {at})"
            )
        ours = by_tool[INTERLOCK].median
        best_pssh = min(by_tool[PSSH_FAST].median, by_tool[PSSH_DEFAULT].median)
        ratio = best_pssh / ours
        summary.append(
            f"{size} hosts: interlock {ours:.2f} s = {ratio:.2f}x parallel-ssh's best "
            f"({best_pssh:.2f} s) [target >= 1: {'met' if ratio >= 1 else 'MISSED'}]"
        )
        share = size / ours / floors.same
        summary.append(
            f"{size} hosts: interlock {size / ours:.0f} hosts/s = {share:.2f} of the floor's "
            f"{floors.same:.0f} sessions/s at window {window} [goal >= 0.85: "
            f"{'met' if share >= 0.85 else 'MISSED'}]; {size / ours / floors.wide:.2f} of "
            f"{floors.wide:.0f} at window {FLOOR_WINDOW}"
        )
        if ANSIBLE in by_tool:
            ratio = by_tool[ANSIBLE].median / ours
            summary.append(
                f"{size} hosts: interlock is {ratio:.1f}x faster than ansible "
                f"({by_tool[ANSIBLE].median:.2f} s) [target >= 5: "
                f"{'met' if ratio >= 5 else 'MISSED'}]"
            )
    return "\n".join([*lines, "", *summary])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--no-ansible", action="store_true", help="skip ansible (slowest)")
    parser.add_argument("--ansible-venv", type=Path, default=ANSIBLE_VENV)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the lab needs namespaces, a bridge and mounts")
    pssh = ensure_pssh()
    ansible = None if args.no_ansible else ensure_ansible(args.ansible_venv)
    results = {}
    for size in args.hosts:
        with tempfile.TemporaryDirectory(prefix="interlock-bench-", dir="/var/tmp") as tmp:
            say(f"building a lab of {size} hosts")
            results[size] = bench_size(size, args.runs, args.window, pssh, ansible, Path(tmp))
    print(report(results, args.window, args.runs))
    if ansible is not None:
        print(f"(ansible-core stays installed in {args.ansible_venv} for later runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
