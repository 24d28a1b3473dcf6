"""A private mount + PID + network namespace in which our gate is /usr/sbin/policy-rc.d.

The machine's own /usr/sbin/policy-rc.d is never touched: inside the namespace a recorder script
is bind-mounted over it (it logs the exact argv, then execs the generated gate), a tmpfs hides
/run (so init scripts write their pidfiles privately and invoke-rc.d sees no systemd), and the
test's policy and ledger directories are bound over /etc/policy-rc.d and /var/lib/policy-rc.d.
The namespace's PID 1 is a tiny reaper; killing it kills every daemon started inside, so nothing
outlives a test. Commands run inside through `nsenter`.
"""

from __future__ import annotations

import os
import shlex
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from host.gate_env import SYSTEM_PYTHON, GateEnv

# PID 1 of the namespace: reap orphaned daemons (so a stopped daemon does not linger as a
# zombie that start-stop-daemon would wait for), say when ready, then sleep.
REAPER = """
import os, signal, sys
def reap(*_):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    signal.pause()
"""

CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}

# The two directories the gate's policies and ledger live in on a real host. They are bound
# over inside the namespace, so they must exist; the session fixture creates them (empty) only
# when the machine lacks them and removes them afterwards.
MACHINE_DIRS = (Path("/etc/policy-rc.d"), Path("/var/lib/policy-rc.d"))


def utmp_runlevel_record(runlevel: str, previous: str = "N") -> bytes:
    """A glibc x86-64 `struct utmp` RUN_LVL record, what `runlevel` reads from /run/utmp."""
    run_lvl = 1
    record = struct.pack(
        "<h2xi32s4s32s256shhiii4i20x",
        run_lvl,
        ord(runlevel) + 256 * ord(previous),
        b"~",
        b"~~",
        b"runlevel",
        b"",
        0,
        0,
        0,
        int(time.time()),
        0,
        0,
        0,
        0,
        0,
    )
    assert len(record) == 384
    return record


class Namespace:
    def __init__(self, gate: GateEnv, workdir: Path, runlevel: str | None = "2") -> None:
        self.gate = gate
        self.workdir = workdir
        self.runlevel = runlevel
        self.argv_log = workdir / "policy-rc.d.argv"
        self.recorder = workdir / "policy-rc.d.recorder"
        self.unshare: subprocess.Popen[str] | None = None
        self.init_pid: int | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # One line per call, arguments separated by US (0x1f): blanks inside one stay visible.
        self.recorder.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\037' \"$@\" >> {shlex.quote(str(self.argv_log))}\n"
            f"printf '\\n' >> {shlex.quote(str(self.argv_log))}\n"
            f'exec {shlex.quote(str(self.gate.script))} "$@"\n'
        )
        self.recorder.chmod(0o755)
        setup = [
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/sshd /run/lock",
            f"mount --bind {shlex.quote(str(self.recorder))} /usr/sbin/policy-rc.d",
            f"mount --bind {shlex.quote(str(self.gate.policy_dir))} /etc/policy-rc.d",
            f"mount --bind {shlex.quote(str(self.gate.ledger_dir))} /var/lib/policy-rc.d",
            "ip link set lo up",
        ]
        if self.runlevel is not None:
            utmp = self.workdir / "utmp"
            utmp.write_bytes(utmp_runlevel_record(self.runlevel))
            setup.append(f"cp {shlex.quote(str(utmp))} /run/utmp")
        setup.append(f"exec {SYSTEM_PYTHON} -I -S -c {shlex.quote(REAPER)}")
        self.unshare = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--net",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                "\n".join(setup),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.unshare.stdout is not None
        line = self.unshare.stdout.readline()
        if line.strip() != "ready":
            self.unshare.kill()
            _, err = self.unshare.communicate(timeout=10)
            raise RuntimeError(f"namespace setup failed: {err.strip()}")
        children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text()
        self.init_pid = int(children.split()[0])

    def run(
        self, argv: list[str], timeout: float = 300, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        assert self.init_pid is not None, "namespace not started"
        # Output goes to files, not pipes: a daemon started by the command may keep an
        # inherited descriptor open, and a pipe would then never reach end-of-file.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            completed = subprocess.run(
                [
                    "nsenter",
                    f"--target={self.init_pid}",
                    "--mount",
                    "--pid",
                    "--net",
                    "--wd=/",
                    "--",
                    *argv,
                ],
                stdout=out,
                stderr=err,
                check=False,
                timeout=timeout,
                env=CLEAN_ENV,
                stdin=subprocess.DEVNULL,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(argv, completed.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(
                f"{argv} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                f"stderr:\n{result.stderr}"
            )
        return result

    def read(self, path: str) -> str | None:
        """A file as the namespace sees it (its /run is private)."""
        result = self.run(["cat", path])
        return result.stdout if result.returncode == 0 else None

    def pid_of(self, pidfile: str) -> int | None:
        text = self.read(pidfile)
        if not text or not text.split():
            return None
        pid = int(text.split()[0])
        alive = self.run(["test", "-d", f"/proc/{pid}"]).returncode == 0
        return pid if alive else None

    def wait_pid(self, pidfile: str, other_than: int | None = None, timeout: float = 15) -> int:
        """The daemon's pid once its pidfile names a live process (other than `other_than`):
        daemons write their pidfile themselves, after the init script has returned."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self.pid_of(pidfile)
            if pid is not None and pid != other_than:
                return pid
            if time.monotonic() > deadline:
                raise AssertionError(f"{pidfile} names no new live process after {timeout}s")
            time.sleep(0.05)

    def recorded_argv(self) -> list[list[str]]:
        if not self.argv_log.exists():
            return []
        return [line.split("\x1f")[:-1] for line in self.argv_log.read_text().splitlines()]

    def clear_argv(self) -> None:
        self.argv_log.unlink(missing_ok=True)

    def close(self) -> None:
        """Kill the namespace's PID 1: the kernel then kills everything else inside it."""
        if self.init_pid is not None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.init_pid = None
        if self.unshare is not None:
            try:
                self.unshare.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.unshare.kill()
                self.unshare.wait(timeout=30)
            for stream in (self.unshare.stdout, self.unshare.stderr):
                if stream is not None:
                    stream.close()
            self.unshare = None
