"""Real Debian packages for the detection tests, built with gcc and dpkg-deb, in a local apt repo.

Five packages, each in versions 1.0 and 2.0 (`ilt` = interlock test):

- libilt1: a real shared library, /usr/lib/ilt-test/libilt.so.1.
- ilt-cdaemon: a C daemon linked against it (rpath /usr/lib/ilt-test) that sleeps; sysv init
  script; postinst restarts it through invoke-rc.d on upgrade.
- python3-iltdep, python3-iltpy: Python packages; iltpy's submodule imports iltdep.
- ilt-pydaemon: two Python daemons importing iltpy (ilt-pydaemon, ilt-pyworker), each with an init
  script. Its postinst restarts only ilt-pydaemon on upgrade, like a package whose one
  deb-systemd-invoke call stopped at the first refused unit: nobody asks about ilt-pyworker.

apt runs against the repository with a private sources list, lists, cache, extended states and
logs (`apt_options`), so the machine's own apt configuration and state are untouched; only dpkg's
database and the packages' files are the machine's, and `purge_all` removes them.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("ilt-pydaemon", "ilt-cdaemon", "python3-iltpy", "python3-iltdep", "libilt1")
LIB_DIR = "/usr/lib/ilt-test"
DIST = "/usr/lib/python3/dist-packages"


@dataclass
class Deb:
    name: str
    version: str
    description: str
    depends: str = ""
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)
    architecture: str = "all"

    def build(self, staging: Path, out_dir: Path) -> Path:
        root = staging / f"{self.name}_{self.version}"
        (root / "DEBIAN").mkdir(parents=True)
        for path, (data, mode) in self.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(mode)
        control = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            f"Architecture: {self.architecture}",
            "Maintainer: interlock tests <root@localhost>",
            "Section: misc",
            "Priority: optional",
        ]
        if self.depends:
            control.append(f"Depends: {self.depends}")
        control.append(f"Description: {self.description}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for name, body in self.scripts.items():
            script = root / "DEBIAN" / name
            script.write_text(body)
            script.chmod(0o755)
        deb = out_dir / f"{self.name}_{self.version}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
        return deb


def init_script(name: str, start: str, daemon_line: str) -> bytes:
    """A sysv init script driving start-stop-daemon with a pidfile in /run."""
    return textwrap.dedent(
        f"""\
        #!/bin/sh
        ### BEGIN INIT INFO
        # Provides:          {name}
        # Required-Start:    $remote_fs
        # Required-Stop:     $remote_fs
        # Default-Start:     2 3 4 5
        # Default-Stop:      0 1 6
        # Short-Description: interlock detection test daemon
        ### END INIT INFO
        {daemon_line}
        PIDFILE=/run/{name}.pid
        case "$1" in
          start)
            start-stop-daemon --start --quiet --oknodo --background --make-pidfile \\
              --pidfile $PIDFILE {start}
            ;;
          stop)
            start-stop-daemon --stop --quiet --oknodo --retry TERM/5/KILL/5 \\
              --pidfile $PIDFILE --remove-pidfile
            ;;
          restart|force-reload)
            "$0" stop
            "$0" start
            ;;
          status)
            start-stop-daemon --status --pidfile $PIDFILE
            ;;
          *)
            echo "usage: $0 start|stop|restart|status" >&2
            exit 3
            ;;
        esac
        """
    ).encode()


def maintainer_scripts(start: list[str], restart: list[str]) -> dict[str, str]:
    """postinst registers and starts the services (restarts `restart` on upgrade); postrm
    unregisters them on purge; prerm stops them on removal."""
    services = sorted(set(start) | set(restart))
    register = "\n".join(f"    update-rc.d {s} defaults >/dev/null" for s in services)
    starts = "\n".join(f"        invoke-rc.d {s} start" for s in start)
    restarts = "\n".join(f"        invoke-rc.d {s} restart" for s in restart) or "        :"
    stops = "\n".join(f"    invoke-rc.d {s} stop || true" for s in services)
    unregister = "\n".join(f"    update-rc.d {s} remove >/dev/null" for s in services)
    return {
        "postinst": f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
{register}
    if [ -n "$2" ]; then
{restarts}
    else
{starts}
    fi
fi
""",
        "prerm": f"""#!/bin/sh
set -e
if [ "$1" = remove ]; then
{stops}
fi
""",
        "postrm": f"""#!/bin/sh
set -e
if [ "$1" = purge ]; then
{unregister}
fi
""",
    }


PY_DAEMON = """#!/usr/bin/python3
import signal
import sys
import time

import iltpy

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
iltpy.greet()
while True:
    time.sleep(3600)
"""


def py3clean(package: str) -> dict[str, str]:
    """Remove the bytecode the daemons wrote, as Debian's Python packages do before removal."""
    return {
        "prerm": f"""#!/bin/sh
set -e
if command -v py3clean >/dev/null 2>&1; then
    py3clean -p {package}
fi
"""
    }


def _compile(work: Path, version: str) -> tuple[bytes, bytes]:
    """libilt.so.1 and the daemon linked to it, for one version."""
    src = work / f"src-{version}"
    src.mkdir()
    (src / "ilt.c").write_text(f'const char *ilt_version(void) {{ return "{version}"; }}\n')
    (src / "daemon.c").write_text(
        "#include <unistd.h>\n"
        "const char *ilt_version(void);\n"
        f'static const char *built = "{version}";\n'
        "int main(void) { (void)ilt_version(); (void)built; for (;;) pause(); }\n"
    )
    lib = src / "libilt.so.1"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libilt.so.1", "-o", str(lib), str(src / "ilt.c")],
        check=True,
        capture_output=True,
    )
    daemon = src / "ilt-cdaemon"
    subprocess.run(
        [
            "gcc",
            "-o",
            str(daemon),
            str(src / "daemon.c"),
            f"-L{src}",
            "-l:libilt.so.1",
            f"-Wl,-rpath,{LIB_DIR}",
        ],
        check=True,
        capture_output=True,
    )
    return lib.read_bytes(), daemon.read_bytes()


def core_module(version: str) -> bytes:
    return f"import iltdep\n\n\ndef greet():\n    return {version!r}, iltdep.VERSION\n".encode()


def debs_for(version: str, work: Path) -> list[Deb]:
    lib, daemon = _compile(work, version)
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return [
        Deb(
            "libilt1",
            version,
            "interlock test shared library",
            files={f"{LIB_DIR}/libilt.so.1": (lib, 0o644)},
        ),
        Deb(
            "ilt-cdaemon",
            version,
            "interlock test C daemon",
            depends="libilt1",
            architecture=arch,
            files={
                "/usr/sbin/ilt-cdaemon": (daemon, 0o755),
                "/etc/init.d/ilt-cdaemon": (
                    init_script("ilt-cdaemon", "--exec $DAEMON", "DAEMON=/usr/sbin/ilt-cdaemon"),
                    0o755,
                ),
            },
            scripts=maintainer_scripts(["ilt-cdaemon"], ["ilt-cdaemon"]),
        ),
        Deb(
            "python3-iltdep",
            version,
            "interlock test Python dependency",
            files={f"{DIST}/iltdep/__init__.py": (f'VERSION = "{version}"\n'.encode(), 0o644)},
            scripts=py3clean("python3-iltdep"),
        ),
        Deb(
            "python3-iltpy",
            version,
            "interlock test Python package",
            depends="python3-iltdep",
            files={
                f"{DIST}/iltpy/__init__.py": (b"from .core import greet\n", 0o644),
                f"{DIST}/iltpy/core.py": (core_module(version), 0o644),
            },
            scripts=py3clean("python3-iltpy"),
        ),
        Deb(
            "ilt-pydaemon",
            version,
            "interlock test Python daemons",
            depends="python3-iltpy, python3:any",
            files={
                "/usr/sbin/ilt-pydaemon": (PY_DAEMON.encode(), 0o755),
                "/usr/sbin/ilt-pyworker": (PY_DAEMON.encode(), 0o755),
                # SCRIPT, not DAEMON: the process's executable is the interpreter, not the script.
                "/etc/init.d/ilt-pydaemon": (
                    init_script(
                        "ilt-pydaemon", "--startas $SCRIPT", "SCRIPT=/usr/sbin/ilt-pydaemon"
                    ),
                    0o755,
                ),
                "/etc/init.d/ilt-pyworker": (
                    init_script(
                        "ilt-pyworker", "--startas $SCRIPT", "SCRIPT=/usr/sbin/ilt-pyworker"
                    ),
                    0o755,
                ),
            },
            scripts=maintainer_scripts(["ilt-pydaemon", "ilt-pyworker"], ["ilt-pydaemon"]),
        ),
    ]


def build_repository(work: Path) -> Path:
    """Both versions of every package, with a Packages index: a `file:` apt repository."""
    repo = work / "repo"
    repo.mkdir(parents=True)
    staging = work / "staging"
    for version in ("1.0", "2.0"):
        for deb in debs_for(version, work):
            deb.build(staging, repo)
    index = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    (repo / "Packages").write_bytes(index.stdout)
    return repo


def apt_options(repo: Path, work: Path) -> list[str]:
    """apt-get options that use only the test's repository and the test's own apt state."""
    work.mkdir(parents=True, exist_ok=True)
    sources = work / "sources.list"
    sources.write_text(f"deb [trusted=yes] file:{repo} ./\n")
    for directory in ("lists/partial", "cache/archives/partial", "log"):
        (work / directory).mkdir(parents=True, exist_ok=True)
    settings = {
        "Dir::Etc::SourceList": str(sources),
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::State::Lists": str(work / "lists"),
        "Dir::Cache": str(work / "cache"),
        "Dir::State::extended_states": str(work / "extended_states"),
        "Dir::Log": str(work / "log"),
        "DPkg::Options::": f"--log={work / 'dpkg.log'}",
        "DPkg::Lock::Timeout": "300",
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "APT::Install-Recommends": "false",
    }
    options = []
    for key, value in settings.items():
        options += ["-o", f"{key}={value}"]
    return options


def apt_get(options: list[str], *args: str) -> list[str]:
    return ["apt-get", "-y", "-q", *options, *args]
