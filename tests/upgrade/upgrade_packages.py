"""Small real Debian packages, built with dpkg-deb, in v1 and v2 apt repositories served over HTTP.

The "ilu" release (interlock lab upgrade) has two projects:

- ident: `ilu-ident` ships an HTTP API service (the lab API program, /health) with an init script,
  and `ilu-ident-manage`, the project's database command;
- compute: `ilu-compute-common` ships `ilu-compute-manage`; `ilu-compute-conductor` (controllers)
  and `ilu-compute-agent` (computes) are daemons with init scripts;
- telemetry and net: `ilu-telemetry-agent` and `ilu-net-agent`, daemons on the computes (the
  data plane of several projects on one host), and `ilu-net-l3-agent` for network nodes;

plus `ilu-lib`, a shared library every service package depends on, and `ilu-puppet`, a stand-in
for config management (a daemon called `puppet`), in v1 only.

The database is a directory every lab host sees (under the machine's /tmp, which lab hosts
share): `PROJECT.schema` holds the schema version, `PROJECT.log` gets a line for every database
command (`sync 2.0-1 ctl2`), `PROJECT.pending` counts online migrations still to do (each run
does one and exits 1 while some remain, 0 when none do) and `PROJECT.blocked` makes them exit 2.
Each service start appends `start VERSION schema=SCHEMA` to /var/log/ilu/SERVICE.starts, and
each start and stop `start|stop EPOCH.NANOSECONDS` to /var/log/ilu/SERVICE.events.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from interlock.lab.image import FILES

V1 = "1.0-1"
V2 = "2.0-1"
API_PORT = 8080

DB_MANAGE = """\
#!/bin/sh
# @PROJECT@'s database commands (version @VERSION@)
set -eu
PROJECT=@PROJECT@
VERSION=@VERSION@
. /etc/ilu/ilu.conf
schema="$DB_DIR/$PROJECT.schema"
log="$DB_DIR/$PROJECT.log"
record() { echo "$1 $VERSION $(hostname)" >> "$log"; }
case "${1:-} ${2:-}" in
    "db sync") record sync; echo "$VERSION" > "$schema" ;;
    "db expand") record expand; echo "$VERSION expanded" > "$schema" ;;
    "db migrate") record migrate; echo "$VERSION migrated" > "$schema" ;;
    "db contract") record contract; echo "$VERSION" > "$schema" ;;
    "db version") cat "$schema" ;;
    "db check") [ "$(cat "$schema")" = "$VERSION" ] ;;
    "online_data_migrations ")
        record online
        if [ -e "$DB_DIR/$PROJECT.blocked" ]; then
            echo "some migrations need manual intervention" >&2
            exit 2
        fi
        pending=$(cat "$DB_DIR/$PROJECT.pending" 2>/dev/null || echo 0)
        if [ "$pending" -gt 0 ]; then
            echo $((pending - 1)) > "$DB_DIR/$PROJECT.pending"
            echo "migrated a batch; $((pending - 1)) left"
            exit 1
        fi
        echo "nothing left to migrate"
        ;;
    *) echo "usage: $0 db sync|expand|migrate|contract|version|check | online_data_migrations" >&2
       exit 64 ;;
esac
"""

DAEMON = """\
#!/bin/sh
# A daemon that does nothing until SIGTERM.
trap 'exit 0' TERM
while :; do sleep 1 & wait $!; done
"""

INIT = """\
#!/bin/sh
### BEGIN INIT INFO
# Provides:          @NAME@
# Required-Start:    $remote_fs $network
# Required-Stop:     $remote_fs $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: @NAME@ (@PROJECT@ @VERSION@)
### END INIT INFO

PATH=/bin:/usr/bin:/sbin:/usr/sbin
NAME=@NAME@
DAEMON=/usr/sbin/@NAME@
PIDFILE=/run/@NAME@.pid
VERSION=@VERSION@
BIND=127.0.0.1:@PORT@
DB_DIR=/nonexistent
test -x "$DAEMON" || exit 5
[ -r /etc/ilu/ilu.conf ] && . /etc/ilu/ilu.conf
[ -r /etc/default/@NAME@ ] && . /etc/default/@NAME@

running() {
    start-stop-daemon --status --pidfile "$PIDFILE"
}

do_start() {
    if running; then
        echo "$NAME already running"
        return 0
    fi
    rm -f "$PIDFILE"
@START@
    mkdir -p /var/log/ilu
    schema=$(cat "$DB_DIR/@PROJECT@.schema" 2>/dev/null || echo none)
    echo "start $VERSION schema=$schema" >> "/var/log/ilu/$NAME.starts"
    echo "start $(date +%s.%N)" >> "/var/log/ilu/$NAME.events"
    echo "Started $NAME"
}

do_stop() {
    start-stop-daemon --stop --quiet --pidfile "$PIDFILE" --retry TERM/30/KILL/5
    case $? in
        0) rm -f "$PIDFILE"; mkdir -p /var/log/ilu
           echo "stop $(date +%s.%N)" >> "/var/log/ilu/$NAME.events"; echo "Stopped $NAME" ;;
        1) rm -f "$PIDFILE"; echo "Stopped $NAME" ;;
        *) echo "$NAME did not stop" >&2; return 1 ;;
    esac
}

case "$1" in
    start) do_start ;;
    stop) do_stop ;;
    restart|force-reload) do_stop && do_start ;;
    status)
        if running; then echo "$NAME is running"; exit 0; fi
        echo "$NAME is not running"; exit 3 ;;
    *) echo "Usage: $0 {start|stop|restart|force-reload|status}" >&2; exit 3 ;;
esac
"""

API_START = """\
    start-stop-daemon --start --background --pidfile "$PIDFILE" --startas "$DAEMON" -- \\
        --bind "$BIND" --pidfile "$PIDFILE" --name "$(hostname) $VERSION" --on-stop finish \\
        || return 1
    tries=0
    while [ ! -s "$PIDFILE" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || { echo "$NAME did not listen on $BIND" >&2; return 1; }
        sleep 0.05
    done"""

DAEMON_START = """\
    start-stop-daemon --start --background --make-pidfile --pidfile "$PIDFILE" \\
        --startas "$DAEMON" || return 1"""

# What dh_installinit writes into a service package's maintainer scripts.
POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -x /etc/init.d/@NAME@ ]; then
    update-rc.d @NAME@ defaults >/dev/null
    if [ -n "$2" ]; then action=restart; else action=start; fi
    invoke-rc.d @NAME@ $action || exit 1
fi
"""

PRERM = """\
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -x /etc/init.d/@NAME@ ]; then
    invoke-rc.d @NAME@ stop || exit 1
fi
"""

POSTRM = """\
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    update-rc.d @NAME@ remove >/dev/null
fi
"""


@dataclass
class Package:
    name: str
    version: str
    depends: list[str] = field(default_factory=list)
    files: dict[str, tuple[str | bytes, int]] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)

    def build(self, workdir: Path, out: Path) -> Path:
        root = workdir / f"{self.name}_{self.version}"
        shutil.rmtree(root, ignore_errors=True)
        (root / "DEBIAN").mkdir(parents=True)
        control = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            "Architecture: all",
            "Maintainer: interlock tests <tests@interlock.invalid>",
            "Section: misc",
            "Priority: optional",
        ]
        if self.depends:
            control.append("Depends: " + ", ".join(self.depends))
        control.append(f"Description: {self.name} for interlock's upgrade tests")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for script, text in self.scripts.items():
            path = root / "DEBIAN" / script
            path.write_text(text)
            path.chmod(0o755)
        for target, (content, mode) in self.files.items():
            path = root / target.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            path.chmod(mode)
        deb = out / f"{self.name}_{self.version}_all.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
        return deb


def fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key.upper()}@", value)
    return template


def service_files(
    name: str, project: str, version: str, program: str | bytes, start: str, port: int = 0
) -> tuple[dict[str, tuple[str | bytes, int]], dict[str, str]]:
    init = fill(INIT, name=name, project=project, version=version, port=str(port))
    files: dict[str, tuple[str | bytes, int]] = {
        f"/usr/sbin/{name}": (program, 0o755),
        f"/etc/init.d/{name}": (init.replace("@START@", start), 0o755),
    }
    scripts = {
        script: fill(text, name=name)
        for script, text in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM))
    }
    return files, scripts


def release(version: str) -> list[Package]:
    api_program = (FILES / "lab_api.py").read_bytes()
    lib = Package("ilu-lib", version, files={"/usr/lib/ilu/lib-version": (version + "\n", 0o644)})
    api_files, api_scripts = service_files(
        "ilu-ident-api", "ident", version, api_program, API_START, API_PORT
    )
    api_files["/usr/bin/ilu-ident-manage"] = (
        fill(DB_MANAGE, project="ident", version=version),
        0o755,
    )
    ident = Package("ilu-ident", version, [f"ilu-lib (>= {version})"], api_files, api_scripts)
    common = Package(
        "ilu-compute-common",
        version,
        [f"ilu-lib (>= {version})"],
        {
            "/usr/bin/ilu-compute-manage": (
                fill(DB_MANAGE, project="compute", version=version),
                0o755,
            )
        },
    )
    packages = [lib, ident, common]
    for name in ("ilu-compute-conductor", "ilu-compute-agent"):
        files, scripts = service_files(name, "compute", version, DAEMON, DAEMON_START)
        packages.append(
            Package(name, version, [f"ilu-compute-common (= {version})"], files, scripts)
        )
    for project, name in (
        ("telemetry", "ilu-telemetry-agent"),
        ("net", "ilu-net-agent"),
        ("net", "ilu-net-l3-agent"),
    ):
        files, scripts = service_files(name, project, version, DAEMON, DAEMON_START)
        packages.append(Package(name, version, [f"ilu-lib (>= {version})"], files, scripts))
    return packages


def config_management() -> Package:
    files, scripts = service_files("puppet", "puppet", V1, DAEMON, DAEMON_START)
    return Package("ilu-puppet", V1, files=files, scripts=scripts)


def build_repositories(root: Path) -> None:
    """root/v1 and root/v2: flat apt repositories (Packages, Release), unsigned."""
    work = root / "build"
    work.mkdir(parents=True, exist_ok=True)
    for label, version in (("v1", V1), ("v2", V2)):
        out = root / label
        out.mkdir(parents=True, exist_ok=True)
        packages = release(version)
        if version == V1:
            packages.append(config_management())
        for package in packages:
            package.build(work, out)
        scan = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."],
            cwd=out,
            check=True,
            capture_output=True,
        )
        (out / "Packages").write_bytes(scan.stdout)
        result = subprocess.run(
            ["apt-ftparchive", "release", "."], cwd=out, check=True, capture_output=True
        )
        (out / "Release").write_bytes(result.stdout)
    shutil.rmtree(work)


class RepositoryServer:
    """`python -m http.server` on the lab bridge's address, in this (the root) namespace."""

    def __init__(self, root: Path, address: str) -> None:
        self.root = root
        self.address = address
        self.port = free_port(address)
        self.log = (root / "http.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                address,
                "--directory",
                str(root),
                str(self.port),
            ],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        wait_listening(address, self.port, self.process)

    def line(self, label: str) -> str:
        return f"deb [trusted=yes] http://{self.address}:{self.port}/{label} ./\n"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(address: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the repository server exited {process.returncode}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the repository server did not listen")
