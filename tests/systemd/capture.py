"""Re-capture tests/fixtures/systemd/ from a systemd lab host: what `systemctl show` really prints.

    interlock lab up --dir /var/tmp/fx --name fx --subnet 10.239.0.0/24 --hosts 1 \\
        --controllers 0 --lbs 0 --systemd 1
    .venv/bin/python tests/systemd/capture.py /var/tmp/fx fx cmp1
    interlock lab down --dir /var/tmp/fx --name fx

Use a freshly booted host: memcached must never have started on it. The host's cron is
restarted and stopped on the way. The tests that read these files name the values they expect
(pids, times, invocation IDs): update them after a new capture.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from interlock.host.services.systemd import PROPERTIES
from interlock.lab.lab import Lab

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "systemd"
SHOW = ["systemctl", "show", *[arg for prop in PROPERTIES for arg in ("-p", prop)]]
UNIX = ["systemctl", "show", "--timestamp=unix", *SHOW[2:]]


def capture(
    lab: Lab, host: str, name: str, argv: list[str], env: dict[str, str], note: str
) -> None:
    command = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    result = lab.exec(host, command, check=True)
    btime = next(
        line.split()[1]
        for line in lab.read_host_file(host, "/proc/stat").decode().splitlines()
        if line.startswith("btime ")
    )
    shown = " ".join(f"{k}={v}" for k, v in env.items() if k != "PATH")
    header = [
        f"# $ {shown + ' ' if shown else ''}{shlex.join(argv)}",
        "# Captured from a systemd lab host (Debian 12, systemd 252) by tests/systemd/capture.py.",
        f"# Boot time of that host (/proc/stat btime): {btime}",
        f"# {note}",
    ]
    text = "\n".join(header) + "\n" + result.stdout.decode()
    (FIXTURES / name).write_text(text, encoding="utf-8")
    print(f"wrote {FIXTURES / name}")


def main(directory: str, name: str, host: str) -> int:
    lab = Lab(directory, name=name)
    c = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}
    de = {"PATH": "/usr/bin:/bin", "LANG": "de_DE.UTF-8", "TZ": "Europe/Berlin"}
    plain = {"PATH": "/usr/bin:/bin"}
    cron = ["--", "cron.service"]
    capture(lab, host, "cron-active.unix.txt", UNIX + cron, plain, "cron as it booted.")
    capture(
        lab, host, "cron-active.text-c.txt", SHOW + cron, c,
        "Without --timestamp=unix (systemd < 248 cannot do it).",
    )  # fmt: skip
    capture(
        lab, host, "cron-active.text-de.txt", SHOW + cron, de,
        "The same instant as cron-active.text-c.txt, in another locale and zone.",
    )  # fmt: skip
    several = ["--", "cron.service", "ssh.service", "memcached.service", "nosuch.service"]
    capture(
        lab, host, "several.unix.txt", UNIX + several, plain,
        "Several units: one block each, in the order asked.",
    )  # fmt: skip
    capture(
        lab, host, "never-started.unix.txt", [*UNIX, "--", "memcached.service"], plain,
        "Installed, never started this boot.",
    )  # fmt: skip
    capture(
        lab, host, "not-found.unix.txt", [*UNIX, "--", "nosuch.service"], plain,
        "No such unit: systemctl still answers, with LoadState=not-found.",
    )  # fmt: skip
    time.sleep(2)  # a restart in a later second than the first start
    lab.exec(host, ["systemctl", "restart", "cron.service"], check=True)
    capture(
        lab, host, "cron-restarted.unix.txt", UNIX + cron, plain,
        "The same unit after `systemctl restart cron`.",
    )  # fmt: skip
    lab.exec(host, ["systemctl", "stop", "cron.service"], check=True)
    capture(
        lab, host, "stopped.unix.txt", UNIX + cron, plain,
        "Ran, then `systemctl stop cron`: the last start and invocation stay visible.",
    )  # fmt: skip
    lab.exec(host, ["systemctl", "start", "cron.service"], check=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
