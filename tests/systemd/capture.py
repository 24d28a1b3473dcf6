"""Re-capture tests/fixtures/systemd/ from a systemd lab host: what `systemctl show` really prints.

    interlock lab up --dir /var/tmp/fx --name fx --subnet 10.239.0.0/24 --hosts 1 \\
        --controllers 0 --lbs 0 --systemd 1
    .venv/bin/python tests/systemd/capture.py /var/tmp/fx fx cmp1 services
    .venv/bin/python tests/systemd/capture.py /var/tmp/fx fx cmp1 units
    interlock lab down --dir /var/tmp/fx --name fx

`services`: cron and memcached as the service probe sees them. Use a freshly booted host:
memcached must never have started on it. The host's cron is restarted and stopped on the way.

`units`: what the unit-type rule reads (interlock.host.services.units): openssh-server's
ssh.service and ssh.socket (as installed, then switched to socket activation and back), a static
target (rescue-ssh.target, poweroff.target) and an active one (multi-user.target), with their
UnitFileState and Triggers. sshd is restarted on the way; the host's SSH server is ssh.service
again at the end.

The tests that read these files name the values they expect (pids, times, invocation IDs):
update them after a new capture.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from interlock.host.services.systemd import PROPERTIES, UNIT_PROPERTIES
from interlock.lab.lab import Lab

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "systemd"
SHOW = ["systemctl", "show", *[arg for prop in PROPERTIES for arg in ("-p", prop)]]
UNIX = ["systemctl", "show", "--timestamp=unix", *SHOW[2:]]
EXTRA = [p for p in UNIT_PROPERTIES if p not in PROPERTIES]
UNITS = [*UNIX, *[arg for prop in EXTRA for arg in ("-p", prop)]]


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


def services(lab: Lab, host: str) -> None:
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


def units(lab: Lab, host: str) -> None:
    plain = {"PATH": "/usr/bin:/bin"}

    def show(name: str, unit: str, note: str) -> None:
        capture(lab, host, name, [*UNITS, "--", unit], plain, note)

    def systemctl(*args: str) -> None:
        lab.exec(host, ["systemctl", *args], check=True)

    show("ssh-active.unix.txt", "ssh.service", "Debian 12's sshd as ssh.service, as it booted.")
    show(
        "ssh-socket-inactive.unix.txt", "ssh.socket",
        "Debian 12's ssh.socket as installed: disabled, never started (ssh.service listens).",
    )  # fmt: skip
    show("rescue-ssh-target.unix.txt", "rescue-ssh.target", "openssh-server's static target.")
    show(
        "poweroff-target.unix.txt", "poweroff.target", "A static target: restarting it powers off."
    )
    show("multi-user-target.unix.txt", "multi-user.target", "An active target.")
    time.sleep(2)  # a restart in a later second than the first start
    systemctl("restart", "ssh.service")
    show("ssh-restarted.unix.txt", "ssh.service", "The same unit after `systemctl restart ssh`.")
    systemctl("stop", "ssh.service")
    systemctl("start", "ssh.socket")
    show(
        "ssh-socket-listening.unix.txt", "ssh.socket",
        "After `systemctl stop ssh.service; systemctl start ssh.socket`: socket activation.",
    )  # fmt: skip
    show(
        "ssh-inactive.unix.txt", "ssh.service",
        "ssh.service while ssh.socket listens and no connection has come yet.",
    )  # fmt: skip
    time.sleep(2)
    systemctl("restart", "ssh.socket")
    show(
        "ssh-socket-relistening.unix.txt", "ssh.socket",
        "The same socket after `systemctl restart ssh.socket`.",
    )  # fmt: skip
    systemctl("stop", "ssh.socket")
    systemctl("start", "ssh.service")


def main(directory: str, name: str, host: str, what: str) -> int:
    lab = Lab(directory, name=name)
    {"services": services, "units": units}[what](lab, host)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[4] not in ("services", "units"):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
