"""The host demo: the seed's story of a package update that must not restart a service.

Runs on this machine's real cron package, in a sandbox where interlock's gate is
/usr/sbin/policy-rc.d (see interlock.lab.sandbox): auto restarts off, `apt-get install
--reinstall cron` is refused a restart and the refusal is recorded, `interlock status` shows it,
`interlock restart --deferred-only` restarts cron verified and clears it.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from interlock.demo.narrator import expand, narrate
from interlock.lab.sandbox import HostSandbox

STORY = """
@@ A sandboxed view of this machine: interlock's gate is /usr/sbin/policy-rc.d, cron is running
/etc/init.d/cron start >/dev/null && sleep 0.5  # cron rewrites its pidfile after forking
echo "cron is running as pid $(cat /run/crond.pid)"
@$ interlock gate explain cron restart
@@ The operator turns automatic restarts off (what a charm's enable-auto-restarts=False does)
@$ interlock auto-restarts off
@$ interlock gate explain cron restart
@@ A package update wants to restart cron: the gate refuses and records it
@$ apt-get install --reinstall -y -q cron 2>&1 | grep -E 'Setting up|invoke-rc.d|deferred'
echo "cron still runs as pid $(cat /run/crond.pid)"
@@ The host says what it owes, in the charms' words and format
@$ interlock status
@$ interlock show
@$ interlock show --format charm
@$ ls /var/lib/policy-rc.d/
@@ In a maintenance window the operator applies it: one service at a time, verified
@$ interlock restart --deferred-only
echo "cron now runs as pid $(cat /run/crond.pid)"
@$ interlock status
@@ Back to normal
@$ interlock auto-restarts on
"""


def run_host_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="interlock-demo-") as workdir:
        sandbox = HostSandbox(Path(workdir))
        root = shlex.quote(str(sandbox.root))
        python = shlex.quote(sys.executable)
        prelude = (
            f'interlock() {{ {python} -m interlock.cli.main --root {root} "$@"; }}\n'
            "export DEBIAN_FRONTEND=noninteractive\n"
        )
        # `ls /var/lib/policy-rc.d` in the story means the sandbox's ledger directory.
        story = STORY.replace("/var/lib/policy-rc.d/", f"{sandbox.paths.ledger_dir}/")
        return narrate(sandbox.argv(prelude + expand(story)))
