"""A private mount + PID namespace for detection tests, entered with nsenter.

Inside it `/usr/sbin/policy-rc.d` is a bind mount of interlock's gate (configured for the test's
own policy and ledger directories), `/run` is a tmpfs holding a runlevel-2 utmp record (so
invoke-rc.d acts instead of asking with `(restart)`), and `/proc` shows only the namespace's
processes. Extra bind mounts (apt's configuration directory) are given by the test. PID 1 reaps
orphaned daemons, so a stopped daemon never lingers as a zombie that start-stop-daemon would wait
for; killing it kills every process inside. The machine's own files are never modified: every
mount disappears with the namespace.
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

SYSTEM_PYTHON = "/usr/bin/python3"
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}

_INIT = """
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
sys.stdout.write("up\\n")
sys.stdout.flush()
while True:
    signal.pause()
"""


def runlevel_utmp(level: str = "2") -> bytes:
    """glibc's 384-byte x86-64 `struct utmp`, type RUN_LVL: what `runlevel` reads."""
    return struct.pack(
        "<h2xi32s4s32s256s2h3i4i20x",
        1,  # RUN_LVL
        ord(level) + 256 * ord("N"),
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


class DetectNamespace:
    def __init__(self, workdir: Path, gate_script: Path, binds: dict[Path, str]) -> None:
        self.workdir = workdir
        self.gate_script = gate_script
        self.binds = binds
        self.process: subprocess.Popen[str] | None = None
        self.init_pid: int | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        utmp = self.workdir / "utmp"
        utmp.write_bytes(runlevel_utmp())
        setup = [
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/lock",
            f"cp {shlex.quote(str(utmp))} /run/utmp",
            f"mount --bind {shlex.quote(str(self.gate_script))} /usr/sbin/policy-rc.d",
        ]
        for source, target in self.binds.items():
            setup.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
        setup.append(f"exec {SYSTEM_PYTHON} -I -S -c {shlex.quote(_INIT)}")
        self.process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
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
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "up":
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"namespace setup failed: {err.strip()}")
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        self.init_pid = int(children.split()[0])

    def run(
        self, argv: list[str], check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside; output goes through files (a daemon may keep a pipe open)."""
        assert self.init_pid is not None, "namespace not started"
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run(
                ["nsenter", f"--target={self.init_pid}", "--mount", "--pid", "--wd=/", "--", *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=CLEAN_ENV,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(argv, done.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(
                f"{shlex.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
            )
        return result

    def pid_of(self, pidfile: str) -> int | None:
        """The live pid a pidfile inside the namespace names (pids as the namespace sees them)."""
        result = self.run(
            ["sh", "-c", f'p=$(cat {pidfile}) && test -d /proc/"$p" && echo "$p"'], False
        )
        return int(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def close(self) -> None:
        if self.init_pid is not None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.init_pid = None
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.process = None
