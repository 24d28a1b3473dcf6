"""A private view of this machine in which interlock's gate is `/usr/sbin/policy-rc.d`.

For the host demo and the host and detection tests: real invoke-rc.d, dpkg and init scripts act on
this machine's packages, but inside a private mount and PID namespace where

- `/usr/sbin/policy-rc.d` is a bind mount of interlock's gate (the machine's own file is never
  touched: every mount disappears with the namespace), and other directories can be bound too,
- `/run` is a tmpfs, with a utmp record for runlevel 2 unless asked otherwise, so invoke-rc.d asks
  `cron restart 2` (not the out-of-runlevel `(restart)`), and pidfiles of daemons started inside
  stay inside,
- `/proc` shows only the namespace's processes,
- every daemon started inside dies with the namespace's first process.

A `HostSandbox` keeps policies, ledger, state and gate configuration under a root directory,
reached with `interlock --root ROOT`.
"""

from __future__ import annotations

import os
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from interlock.errors import InterlockError
from interlock.host.gate import GateConfig
from interlock.host.gate_install import package_root, render_gate_script
from interlock.host.paths import HostPaths

UTMP_FORMAT = "=h2xi32s4s32s256shhiii4i20s"  # glibc's struct utmp on 64-bit Linux: 384 bytes
RUN_LVL = 1

# interlock's command line, run by this interpreter (so with this installation of interlock).
CLI = [sys.executable, "-m", "interlock.cli.main"]

# Commands run inside see this environment, not the caller's (no pyenv, no locale surprises).
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}

# The namespace's PID 1 in a session, run by the machine's python without site (it starts fast).
# It reaps orphaned daemons, so a stopped daemon does not linger as a zombie that
# start-stop-daemon would wait for, says when it is ready, then sleeps until killed.
INIT_PYTHON = "/usr/bin/python3"
INIT = """
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


class SandboxError(InterlockError):
    """A sandbox namespace could not be set up, or a command checked inside it failed."""


def utmp_runlevel_record(runlevel: str = "2", previous: str = "N") -> bytes:
    """The record sysvinit writes for the current runlevel; `runlevel` reads it back."""
    return struct.pack(
        UTMP_FORMAT,
        RUN_LVL,
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
        b"",
    )


class NamespaceSession:
    """A sandbox namespace whose PID 1 lives until `close`, so many commands can run inside.

    `gate` is bound over /usr/sbin/policy-rc.d and each `binds` source over its target; `network`
    adds a private network namespace with only loopback up. Files of the session (the utmp record)
    go to `workdir`. `script_argv` instead runs one script as the PID 1 of a fresh namespace.
    """

    def __init__(
        self,
        workdir: Path,
        gate: Path,
        binds: Mapping[Path, str] | None = None,
        runlevel: str | None = "2",
        network: bool = False,
    ) -> None:
        self.workdir = workdir
        self.gate = gate
        self.binds = dict(binds or {})
        self.runlevel = runlevel
        self.network = network
        self.unshare: subprocess.Popen[str] | None = None
        self.init_pid: int | None = None

    def _namespaces(self) -> list[str]:
        return ["--mount", "--pid", *(["--net"] if self.network else [])]

    def _unshare(self, init: str, *args: str) -> list[str]:
        """The command that sets the namespace up, then runs `init` (sh) as its PID 1."""
        setup = [
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/lock /run/sshd",
        ]
        if self.runlevel is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            utmp = self.workdir / "utmp"
            utmp.write_bytes(utmp_runlevel_record(self.runlevel))
            setup.append(f"cp {shlex.quote(str(utmp))} /run/utmp")
        for source, target in {self.gate: "/usr/sbin/policy-rc.d", **self.binds}.items():
            setup.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
        if self.network:
            setup.append("ip link set lo up")
        setup.append(init)
        return [
            "unshare",
            *self._namespaces(),
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            "\n".join(setup),
            *args,
        ]

    def script_argv(self, script: str) -> list[str]:
        """The command that runs `script` (sh) as PID 1 of a fresh namespace: all it started
        dies when it ends, and its output is the command's own (a caller can stream it)."""
        return self._unshare('exec sh -c "$1"', "sandbox", script)

    def start(self) -> None:
        self.unshare = subprocess.Popen(
            self._unshare(f"exec {INIT_PYTHON} -I -S -c {shlex.quote(INIT)}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.unshare.stdout is not None
        if self.unshare.stdout.readline().strip() != "ready":
            self.unshare.kill()
            _, err = self.unshare.communicate(timeout=10)
            self.unshare = None
            raise SandboxError(f"namespace setup failed: {err.strip()}")
        pid = self.unshare.pid
        self.init_pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])

    def run(
        self, argv: Sequence[str], check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside, in CLEAN_ENV; `check` raises SandboxError on a non-zero exit."""
        if self.init_pid is None:
            raise SandboxError("namespace not started")
        enter = ["nsenter", f"--target={self.init_pid}", *self._namespaces(), "--wd=/", "--"]
        # Output goes to files, not pipes: a daemon started by the command may keep an
        # inherited descriptor open, and a pipe would then never reach end-of-file.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run(
                [*enter, *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=CLEAN_ENV,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            output = out.read(), err.read()
        result = subprocess.CompletedProcess(list(argv), done.returncode, *output)
        if check and result.returncode != 0:
            raise SandboxError(
                f"{shlex.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
            )
        return result

    def read(self, path: str) -> str | None:
        """A file as the namespace sees it (its /run is private), None if it cannot be read."""
        result = self.run(["cat", path], check=False)
        return result.stdout if result.returncode == 0 else None

    def pid_of(self, pidfile: str) -> int | None:
        """The live pid a pidfile inside names (as the namespace numbers its processes)."""
        words = (self.read(pidfile) or "").split()
        if not words or not words[0].isdigit():
            return None
        alive = self.run(["test", "-d", f"/proc/{words[0]}"], check=False).returncode == 0
        return int(words[0]) if alive else None

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class HostSandbox:
    """A sandbox root directory: interlock's files under it and the gate configured for them."""

    def __init__(self, root: Path, runlevel: str | None = "2", on_policy_error: str = "deny"):
        self.root = root
        self.paths = HostPaths.under(root)
        self.runlevel = runlevel
        self.gate_script = root / "gate" / "policy-rc.d"
        for directory in (self.paths.policy_dir, self.paths.ledger_dir, self.paths.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.gate_config.parent.mkdir(parents=True, exist_ok=True)
        config = GateConfig()
        config.policy_dir = str(self.paths.policy_dir)
        config.ledger_dir = str(self.paths.ledger_dir)
        config.log_file = str(self.paths.gate_log)
        config.cache_file = str(self.paths.gate_cache)
        config.on_policy_error = on_policy_error
        self.paths.gate_config.write_text(config.render())
        self.gate_script.parent.mkdir(parents=True, exist_ok=True)
        self.gate_script.write_text(render_gate_script(package_root(), str(self.paths.gate_config)))
        self.gate_script.chmod(0o755)

    def cli(self, *args: str) -> list[str]:
        """The argv of `interlock --root ROOT ARGS…`."""
        return [*CLI, "--root", str(self.root), *args]

    def argv(self, script: str) -> list[str]:
        """The command that runs `script` (sh) once inside a namespace with this sandbox's gate."""
        namespace = NamespaceSession(self.root / "gate", self.gate_script, runlevel=self.runlevel)
        return namespace.script_argv(script)
