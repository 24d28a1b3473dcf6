"""The Debian 12 root file system of systemd lab hosts: built once with mmdebstrap, then cached.

Each systemd host boots from its own overlay over this tree, so nothing a host does (systemd's
boot-time cleanup included) reaches the machine's own files. The image lives under
`<cache>/<recipe hash>/`: a changed package list or setup script builds a new one. It is built
into a temporary directory and renamed into place under a lock, so two test processes never build
it twice at once and nobody ever sees a half-built tree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from interlock.lab.errors import LabError

IMAGES_DIR = Path("/var/tmp/interlock-lab/images")
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
READY_MARK = "image.json"

PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "procps",
    "cron",
    "memcached",
    "haproxy",
    "needrestart",
    "rabbitmq-server",
    # systemctl's timestamps in another locale and zone, for the parser's fixtures.
    "locales",
    "tzdata",
)

# Runs on the machine with the new tree as $1, after every package is installed. Nothing here
# starts a program inside the tree: files only.
SETUP = r"""set -eu
root=$1
# Daemons a host runs only where its role needs them (the lab enables them per host).
rm -f "$root"/etc/systemd/system/multi-user.target.wants/haproxy.service \
      "$root"/etc/systemd/system/multi-user.target.wants/memcached.service \
      "$root"/etc/systemd/system/multi-user.target.wants/rabbitmq-server.service
rm -f "$root"/etc/systemd/system/sockets.target.wants/epmd.socket
# Timers that would wake every host for work a lab host never needs.
rm -f "$root"/etc/systemd/system/timers.target.wants/*.timer
# Kernel interfaces shared with the machine: a host must not mount them (tracing, debugfs).
# The console is the host's log file, not a terminal: no login prompt on it.
for unit in sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
            sys-fs-fuse-connections.mount console-getty.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# Every host uses the lab's one host key; no key of the image may be offered.
rm -f "$root"/etc/ssh/ssh_host_*
# A second locale, so fixtures show what systemctl prints outside C.
sed -i 's/^# *de_DE.UTF-8 UTF-8/de_DE.UTF-8 UTF-8/' "$root"/etc/locale.gen
chroot "$root" locale-gen >/dev/null
# systemd writes a fresh machine id at each boot of a host.
: > "$root"/etc/machine-id
# Kept for tests that reinstall a package inside a host without any network.
mkdir -p "$root"/var/local/debs
for pkg in openssh-server cron memcached haproxy; do
    cp "$root"/var/cache/apt/archives/"$pkg"_*.deb "$root"/var/local/debs/
done
"""


@dataclass(frozen=True)
class Recipe:
    """What an image is made of; its hash names the image's directory."""

    mirror: str
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    setup: str = SETUP

    @property
    def digest(self) -> str:
        text = "\n".join([self.mirror, self.suite, " ".join(self.packages), self.setup])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    root: Path
    built: bool
    seconds: float


_URIS = re.compile(r"^URIs:\s*(\S+)", re.MULTILINE)
_ONE_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", re.MULTILINE)


def debian_mirror(sources: str, suite: str = SUITE) -> str | None:
    """The Debian archive the machine's apt uses, from its sources (one-line or deb822 text)."""
    candidates = _URIS.findall(sources) + [
        uri for uri, dist in _ONE_LINE.findall(sources) if dist == suite
    ]
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return str(uri).rstrip("/")
    return None


def machine_mirror() -> str:
    texts = []
    for location in SOURCES_FILES:
        files = sorted(location.glob("*")) if location.is_dir() else [location]
        for file in files:
            try:
                texts.append(file.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return debian_mirror("\n".join(texts)) or DEFAULT_MIRROR


def default_recipe() -> Recipe:
    return Recipe(mirror=machine_mirror())


def image_dir(recipe: Recipe, cache: Path = IMAGES_DIR) -> Path:
    return cache / recipe.digest


def ensure_image(recipe: Recipe | None = None, cache: Path = IMAGES_DIR) -> Image:
    """The image's root tree, building it first when no finished one is cached."""
    recipe = recipe or default_recipe()
    final = image_dir(recipe, cache)
    if (final / READY_MARK).exists():
        return Image(final / "root", built=False, seconds=0.0)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{recipe.digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / READY_MARK).exists():  # built by whoever held the lock before us
            return Image(final / "root", built=False, seconds=0.0)
        started = time.monotonic()
        _build(recipe, final)
        return Image(final / "root", built=True, seconds=time.monotonic() - started)


def mount_points_under(directory: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `directory` in /proc/self/mountinfo text (octal escapes kept)."""
    prefix = str(directory).rstrip("/") + "/"
    points = [line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4]
    return [p for p in points if p == str(directory) or p.startswith(prefix)]


def _remove_tree(directory: Path) -> None:
    """Remove a left-over tree, never through a mount a killed build left in it (a bind mount of
    the machine's /dev would be emptied)."""
    if not directory.exists():
        return
    mounted = mount_points_under(directory, Path("/proc/self/mountinfo").read_text())
    if mounted:
        raise LabError(
            f"a crashed image build left mounts under {directory}: {', '.join(mounted)} "
            "(unmount them, then try again)"
        )
    shutil.rmtree(directory, ignore_errors=True)


def _build(recipe: Recipe, final: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        raise LabError(
            "systemd lab hosts boot from a Debian image built with mmdebstrap "
            "(apt-get install --no-install-recommends mmdebstrap)"
        )
    # Under the lock, any other tree of this recipe is what a crashed build left.
    for stale in [*final.parent.glob(f".{final.name}.building-*"), final]:
        _remove_tree(stale)
    temp = final.with_name(f".{final.name}.building-{os.getpid()}")
    temp.mkdir(parents=True)
    setup = temp / "setup.sh"
    setup.write_text(recipe.setup, encoding="utf-8")
    argv = [
        "mmdebstrap",
        "--variant=apt",
        "--mode=root",
        "--format=directory",
        f"--include={','.join(recipe.packages)}",
        # apt's lists and the downloaded packages stay, so hosts reinstall without a network.
        "--skip=cleanup/apt/lists",
        "--skip=cleanup/apt/cache",
        f'--customize-hook=sh {setup} "$1"',
        recipe.suite,
        str(temp / "root"),
        recipe.mirror,
    ]
    log = temp / "build.log"
    with log.open("wb") as output:
        result = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        _remove_tree(temp)
        raise LabError(
            f"building the systemd host image failed (mmdebstrap {result.returncode}):\n{tail}"
        )
    document = {"suite": recipe.suite, "mirror": recipe.mirror, "packages": recipe.packages}
    (temp / READY_MARK).write_text(json.dumps(document) + "\n", encoding="utf-8")
    os.rename(temp, final)
