"""A private view of this machine in which interlock's gate is `/usr/sbin/policy-rc.d`.

For the host demo and the host tests: real invoke-rc.d, dpkg and init scripts act on this
machine's packages, but inside a private mount and PID namespace where

- `/usr/sbin/policy-rc.d` is a bind mount of interlock's gate (the machine's own file is never
  touched: the mount disappears with the namespace),
- `/run` is a tmpfs with a utmp record for runlevel 2, so invoke-rc.d asks `cron restart 2`
  (not the out-of-runlevel `(restart)`), and pidfiles of daemons started inside stay inside,
- policies, ledger, state and gate configuration live under the sandbox root, reached with
  `interlock --root ROOT`,
- every daemon started inside dies with the namespace's first process.
"""

from __future__ import annotations

import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path

from interlock.host.gate import GateConfig
from interlock.host.gate_install import package_root, render_gate_script
from interlock.host.paths import HostPaths

UTMP_FORMAT = "=h2xi32s4s32s256shhiii4i20s"  # glibc's struct utmp on 64-bit Linux: 384 bytes
RUN_LVL = 1


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


class HostSandbox:
    """A sandbox root directory and the namespace that runs commands against it."""

    def __init__(self, root: Path, runlevel: str | None = "2", on_policy_error: str = "deny"):
        self.root = root
        self.paths = HostPaths.under(root)
        self.runlevel = runlevel
        self.gate_script = root / "gate" / "policy-rc.d"
        self.utmp = root / "gate" / "utmp"
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
        if runlevel:
            self.utmp.write_bytes(utmp_runlevel_record(runlevel))

    def interlock(self, *args: str) -> str:
        """A shell-quoted `interlock --root ROOT ARGS…` command line for use inside `run`."""
        argv = [sys.executable, "-m", "interlock.cli.main", "--root", str(self.root), *args]
        return shlex.join(argv)

    def argv(self, script: str) -> list[str]:
        """The command that runs `script` (sh) inside the sandbox's namespaces."""
        setup = [
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/lock /run/sshd",
            f"mount --bind {shlex.quote(str(self.gate_script))} /usr/sbin/policy-rc.d",
        ]
        if self.runlevel:
            setup.append(f"cp {shlex.quote(str(self.utmp))} /run/utmp")
        setup.append('exec sh -c "$1"')
        return [
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
            "sandbox",
            script,
        ]

    def run(
        self, script: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(script),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"sandbox script failed ({result.returncode}):\n{script}\n"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
            )
        return result
