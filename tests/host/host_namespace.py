"""A sandbox namespace (interlock.lab.sandbox) that records every policy-rc.d call.

Inside it a recorder script is bound over /usr/sbin/policy-rc.d (it logs the exact argv, then execs
the generated gate), the test's policy and ledger directories are bound over /etc/policy-rc.d and
/var/lib/policy-rc.d, and the network namespace is private too (daemons such as sshd and nginx
listen there, not on the machine).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from host.gate_env import GateEnv
from interlock.lab.sandbox import NamespaceSession

# The two directories the gate's policies and ledger live in on a real host. They are bound
# over inside the namespace, so they must exist; the session fixture creates them (empty) only
# when the machine lacks them and removes them afterwards.
MACHINE_DIRS = (Path("/etc/policy-rc.d"), Path("/var/lib/policy-rc.d"))


class Namespace(NamespaceSession):
    def __init__(self, gate: GateEnv, workdir: Path, runlevel: str | None = "2") -> None:
        binds = {gate.policy_dir: str(MACHINE_DIRS[0]), gate.ledger_dir: str(MACHINE_DIRS[1])}
        super().__init__(workdir, workdir / "policy-rc.d.recorder", binds, runlevel, network=True)
        self.gate_env = gate
        self.argv_log = workdir / "policy-rc.d.argv"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # One line per call, arguments separated by US (0x1f): blanks inside one stay visible.
        self.gate.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\037' \"$@\" >> {shlex.quote(str(self.argv_log))}\n"
            f"printf '\\n' >> {shlex.quote(str(self.argv_log))}\n"
            f'exec {shlex.quote(str(self.gate_env.script))} "$@"\n'
        )
        self.gate.chmod(0o755)
        super().start()

    def run(
        self, argv: Sequence[str], check: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """As the session's `run`, but a test looks at the exit status itself unless it asks."""
        return super().run(argv, check, timeout)

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
