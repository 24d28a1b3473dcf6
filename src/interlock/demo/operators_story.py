"""Two operators, one budget: concurrent rollouts that share disruption slots through etcd.

On a small lab (a load balancer, three controllers running a 3-member etcd, four computes) with
interlock on every host, two people start `interlock rollout run` at nearly the same time, each
from their own shell with their own journal, over computes that overlap, both with
`--max-unavailable role=1` and `--coordination etcd://…`. The second one waits for the slot the
first one holds; `interlock slots list` shows who holds what since when; both complete. A third
actor joins the same budget through `interlock fleetlock serve`: a host's own agent that asks
for a FleetLock slot before it disrupts itself, as Zincati does before a reboot.

The verdict comes from the hosts, not from interlock: the action each rollout runs appends
`start`/`end` lines with the time to /var/log/disruptions on the host around a real, verified
restart of cron, and the demo counts from those records how many computes were ever disrupted at
once. The lab (etcd with it) and the operators' journals are removed at the end, whatever happens.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from interlock.demo.narrator import Narrator
from interlock.lab import etcd
from interlock.lab.errors import LabError
from interlock.lab.lab import Lab
from interlock.lab.scratch import running_lab

INTERLOCK = [sys.executable, "-m", "interlock.cli.main"]
COMPUTES = ("cmp1", "cmp2", "cmp3", "cmp4")
LIMITS = {"alice": "cmp1:cmp2:cmp3", "bob": "cmp2:cmp3:cmp4"}
LOG = "/var/log/disruptions"
# The disruption, bracketed by the host's own record of it: cron restarted through interlock on
# the host (a new instance that stays up for its settle time). Each host has its own /var/lib.
ACTION = "/var/lib/demo/restart-cron"
SCRIPT = f"""#!/bin/sh
echo start $(date +%s.%N) >> {LOG}
interlock restart cron || exit 1
echo end $(date +%s.%N) >> {LOG}
"""
POLL = 0.2  # seconds between looks at the hosts' records while the rollouts run
RUN_TIMEOUT = 300.0
# The third actor: a host's own agent that asks a FleetLock server before disrupting the host.
FLEETLOCK_HOST = "cmp4"
FLEETLOCK_GROUP = "computes"
RETRY = 1.0  # seconds between a FleetLock client's attempts, as a reboot manager polls

Span = tuple[float, float | None]


def parse_record(text: str) -> list[Span]:
    """A host's `start T` / `end T` lines as (start, end) spans; end None while it lasts."""
    spans: list[Span] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue  # a line being written
        try:
            moment = float(fields[1])
        except ValueError:
            continue
        if fields[0] == "start":
            spans.append((moment, None))
        elif fields[0] == "end" and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], moment)
    return spans


def most_at_once(spans: list[Span]) -> int:
    """The largest number of spans that overlap at one moment (an end before a start at a tie)."""
    changes = sorted(
        [(start, 1) for start, _ in spans]
        + [(end if end is not None else float("inf"), -1) for _, end in spans]
    )
    most = current = 0
    for _, change in changes:
        current += change
        most = max(most, current)
    return most


def records(lab: Lab) -> dict[str, list[Span]]:
    return {host: parse_record(lab.read_host_file(host, LOG).decode()) for host in COMPUTES}


@dataclass
class Operator:
    """One person: their own state directory (journal), their own name, their own process."""

    name: str
    state: Path
    process: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None
    said: str = ""

    def env(self) -> dict[str, str]:
        # Their user name is what other operators see as the slot's actor.
        return {**os.environ, "XDG_STATE_HOME": str(self.state), "LOGNAME": self.name,
                "USER": self.name}  # fmt: skip

    def start(self, argv: list[str], show: Callable[[str], None]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env(),
        )
        self.reader = threading.Thread(target=self._read, args=(show,), daemon=True)
        self.reader.start()

    def _read(self, show: Callable[[str], None]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self.said += raw
            show(raw.rstrip("\n"))

    def wait(self) -> int:
        assert self.process is not None and self.reader is not None
        try:
            code = self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            code = -1
        self.reader.join(timeout=10)
        return code

    def ended(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, gently: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if gently:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.process.kill()
            self.process.wait()


class FleetLockClient:
    """cmp4's own agent, speaking FleetLock as Zincati does around a reboot: ask for a slot,
    disrupt the host, report steady state.

    A few lines of HTTP against `interlock fleetlock serve`; the disruption itself runs on the
    host (the same recorded cron restart the rollouts run)."""

    def __init__(self, lab: Lab, server: tuple[str, int], say: Callable[[str], None]) -> None:
        self.lab = lab
        self.server = server
        self.say = say
        self.outcome = "not started"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stopping = threading.Event()

    def post(self, operation: str) -> tuple[int, str]:
        """One FleetLock request: the status, and the server's reason when it refuses."""
        body = json.dumps({"client_params": {"id": FLEETLOCK_HOST, "group": FLEETLOCK_GROUP}})
        connection = http.client.HTTPConnection(*self.server, timeout=10)
        try:
            connection.request(
                "POST",
                f"/v1/{operation}",
                body=body,
                headers={"fleet-lock-protocol": "true", "Content-Type": "application/json"},
            )
            answer = connection.getresponse()
            text = answer.read(4096)
        finally:
            connection.close()
        if answer.status == 200:
            return 200, ""
        value = json.loads(text or b"{}").get("value", "")
        return answer.status, str(value)[:200]

    def _run(self) -> None:
        try:
            self.outcome = self._reboot()
        except (OSError, ValueError, LabError, subprocess.SubprocessError) as exc:
            self.outcome = f"failed: {exc}"
        self.say(f"{FLEETLOCK_HOST:>9} │ {self.outcome}")

    def _reboot(self) -> str:
        waited = ""
        while True:
            status, why = self.post("pre-reboot")
            if status == 200:
                break
            if status != 409:
                return f"pre-reboot refused: {status} {why}"
            if why != waited:
                self.say(f"{FLEETLOCK_HOST:>9} │ POST /v1/pre-reboot: 409 {why}")
                waited = why
            if self.stopping.wait(RETRY):
                return "stopped while waiting for a slot"
        self.say(f"{FLEETLOCK_HOST:>9} │ POST /v1/pre-reboot: 200, slot granted; restarting cron")
        done = self.lab.exec(FLEETLOCK_HOST, [ACTION], timeout=RUN_TIMEOUT)
        status, why = self.post("steady-state")
        self.say(f"{FLEETLOCK_HOST:>9} │ POST /v1/steady-state: {status} {why}".rstrip())
        if done.returncode != 0 or status != 200:
            return f"did not complete (action exit status {done.returncode}, steady-state {status})"
        return "complete: slot taken, host disrupted, slot given back"


class Watch:
    """The hosts' side, live: which computes are disrupted now, and the most at once so far."""

    def __init__(self, lab: Lab, say: Callable[[str], None]) -> None:
        self.lab = lab
        self.say = say
        self.stopping = threading.Event()
        self.most = 0
        self.started = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        shown: tuple[str, ...] | None = None
        while not self.stopping.wait(POLL):
            try:
                seen = records(self.lab)
            except (LabError, OSError, subprocess.SubprocessError):
                continue  # a look that failed; the verdict reads the records again at the end
            self.started = sum(len(spans) for spans in seen.values())
            now = tuple(h for h, spans in seen.items() if spans and spans[-1][1] is None)
            self.most = max(self.most, len(now))
            if now != shown:
                shown = now
                what = ", ".join(now) if now else "none"
                self.say(f"hosts' side: computes disrupted now: {what} (most at once so far: "
                         f"{self.most})")  # fmt: skip


def run_operators_demo() -> int:
    narrator = Narrator()
    printing = threading.Lock()  # one line at a time from the actors, the watch and the steps

    def say(text: str, style: str = "") -> None:
        with printing:
            if style:
                narrator.console.print(f"[{style}]{text}[/]", highlight=False)
            else:
                narrator.console.print(text, markup=False, highlight=False)

    with tempfile.TemporaryDirectory(prefix="interlock-demo-operators-") as tmp:
        workdir = Path(tmp)
        actors = [Operator(name, workdir / name / "state") for name in (*LIMITS, "fleetlock")]
        clients: list[FleetLockClient] = []
        narrator.step(
            "A lab on this machine: lb1, three controllers that also run a 3-member etcd, and "
            "four computes; each host a network namespace with its own sshd"
        )
        with running_lab(workdir / "lab", hosts=8, controllers=3, lbs=1) as lab:
            try:
                url = etcd.start(lab, etcd.member_hosts(lab, 3))
                inventory = str(lab.inventory_path)

                def cli(*args: str) -> int:
                    shown = " ".join(["interlock", *args]).replace(inventory, "inventory.yaml")
                    with printing:
                        return narrator.run([*INTERLOCK, *args], shown=shown)

                def start(actor: Operator, argv: list[str]) -> None:
                    shown = shlex.join(["interlock", *argv[len(INTERLOCK) :]])
                    say(f"{actor.name}$ {shown.replace(inventory, 'inventory.yaml')}", "bold")
                    actor.start(argv, lambda line: say(f"{actor.name:>9} │ {line}"))

                cli("lab", "status", "--dir", str(lab.directory))
                narrator.note(f"etcd members on ctl1, ctl2, ctl3: --coordination {url}")

                narrator.step("interlock goes on every host")
                cli("fleet", "install", "-i", inventory, "--no-chain")
                for host in COMPUTES:
                    lab.write_host_file(host, LOG, "")
                    lab.write_host_file(host, ACTION, SCRIPT, mode=0o755)

                narrator.step(
                    "Two operators, two shells, two journals: alice restarts cron over "
                    f"{LIMITS['alice']}, bob over {LIMITS['bob']}; both allow one compute "
                    "down at a time and share that budget through etcd"
                )
                narrator.note(f"the action, {ACTION} on each host, records the disruption:")
                for line in SCRIPT.splitlines()[1:]:
                    narrator.output(line)
                alice, bob, server = actors
                with Watch(lab, lambda text: say(text, "yellow")):
                    for operator in (alice, bob):
                        start(operator, [
                            *INTERLOCK, "rollout", "run", "-i", inventory,
                            "--limit", LIMITS[operator.name],
                            "--command", ACTION, "--no-restarted-gate",
                            "--concurrency", "3", "--max-unavailable", "role=1",
                            "--coordination", url, "--yes", "--no-progress",
                        ])  # fmt: skip
                        _wait_for(lambda: _started(lab), "the first disruption")
                    # Bob waits for alice's slot (unless a loaded machine made him miss her run).
                    _wait_for(
                        lambda: "waiting for a slot" in bob.said or alice.ended(), "bob to wait"
                    )

                    say(
                        f"\nA third actor: {FLEETLOCK_HOST}'s own agent asks for a FleetLock "
                        "slot before it disrupts the host, as Zincati does before a reboot; "
                        "`interlock fleetlock serve` takes those slots from the same budget "
                        f"(group {FLEETLOCK_GROUP} counts as role=compute)",
                        "bold cyan",
                    )
                    port = _free_port()
                    listen = f"127.0.0.1:{port}"
                    start(server, [
                        *INTERLOCK, "fleetlock", "serve", "--coordination", url,
                        "--listen", listen, "--group", f"{FLEETLOCK_GROUP}=1:role=compute",
                    ])  # fmt: skip
                    _wait_for(lambda: "listening" in server.said, "the FleetLock server")
                    client = FleetLockClient(lab, ("127.0.0.1", port), say)
                    clients.append(client)
                    client.thread.start()

                    narrator.step(
                        "While all three wait their turn: who holds which slot, since when"
                    )
                    cli("slots", "list", "--coordination", url)
                    codes = {operator.name: operator.wait() for operator in (alice, bob)}
                    client.thread.join(timeout=RUN_TIMEOUT)
                    client.stopping.set()
                    server.stop(gently=True)

                narrator.step("The verdict, from the hosts' own records")
                seen = records(lab)
                spans = [span for host in COMPUTES for span in seen[host]]
                most = most_at_once(spans)
                counts = ", ".join(f"{host} {len(seen[host])}" for host in COMPUTES)
                narrator.note(f"disruptions per compute: {counts} ({len(spans)} in all)")
                narrator.note(f"most computes disrupted at once: {most} (the shared limit: 1)")
                for name, code in codes.items():
                    verdict = "complete" if code == 0 else "did not complete"
                    narrator.note(f"{name}'s rollout: {verdict} (exit status {code})")
                narrator.note(f"{FLEETLOCK_HOST}'s FleetLock agent: {client.outcome}")

                narrator.step("No slot is left held")
                cli("slots", "list", "--coordination", url)
                narrator.step("The lab (and its etcd) is torn down, the journals removed")
            finally:
                # Actors end before the lab goes down under them.
                for agent in clients:
                    agent.stopping.set()
                for actor in actors:
                    actor.stop()
    narrator.note("lab down: namespaces, mounts, bridge, etcd and processes removed")
    narrator.finish()
    expected = sum(len(limit.split(":")) for limit in LIMITS.values()) + 1
    done = all(code == 0 for code in codes.values()) and client.outcome.startswith("complete")
    return 0 if done and most == 1 and len(spans) == expected else 1


def _started(lab: Lab) -> bool:
    return any(records(lab).values())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo: timed out waiting for {what}")
        time.sleep(POLL)
