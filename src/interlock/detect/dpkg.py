"""What dpkg's database says: installed versions, each package's files, when they were unpacked.

Read-only and lock-free: `dpkg-query` needs no lock, and the `info/<package>.list` files are
replaced atomically by dpkg. A package's `.list` file is rewritten every time dpkg unpacks the
package, so its modification time is dpkg's own record of when the package's files were last
installed (an upgrade or a reinstall).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from interlock.errors import InterlockError
from interlock.host.policy import canonical_service, is_valid_service_name

ADMIN_DIR = "/var/lib/dpkg"
# dpkg-query expands the \t and \n escapes itself.
QUERY_FORMAT = r"${binary:Package}\t${Version}\t${db:Status-Abbrev}\n"
# Second letter of db:Status-Abbrev: the package's files are on disk (not `n`ot-installed and
# not only `c`onfig-files left).
_FILES_PRESENT = frozenset("iUFHWt")
_INIT_DIR = "/etc/init.d/"
_UNIT_DIRS = ("/lib/systemd/system/", "/usr/lib/systemd/system/")


class DpkgError(InterlockError):
    pass


@dataclass(frozen=True)
class InstalledPackage:
    """One package as dpkg names it: `libc6:amd64` for Multi-Arch: same packages, else `cron`."""

    name: str
    version: str
    status: str


def query_command(admin_dir: str = ADMIN_DIR) -> list[str]:
    return ["dpkg-query", f"--admindir={admin_dir}", "-W", "-f", QUERY_FORMAT]


def parse_query(text: str) -> dict[str, InstalledPackage]:
    """`dpkg-query -W -f '${binary:Package}\\t${Version}\\t${db:Status-Abbrev}\\n'` output."""
    packages: dict[str, InstalledPackage] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0]:
            continue
        name, version, status = fields
        if len(status) >= 2 and status[1] in _FILES_PRESENT and version:
            packages[name] = InstalledPackage(name, version, status.strip())
    return packages


def installed_packages(admin_dir: str = ADMIN_DIR) -> dict[str, InstalledPackage]:
    try:
        result = subprocess.run(
            query_command(admin_dir),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DpkgError(f"dpkg-query failed: {exc}") from None
    if result.returncode != 0:
        raise DpkgError(f"dpkg-query failed: {result.stderr.strip()}")
    return parse_query(result.stdout)


def list_file(admin_dir: str, package: str) -> str:
    return os.path.join(admin_dir, "info", f"{package}.list")


def unpacked_at(admin_dir: str, package: str) -> float | None:
    """When dpkg last unpacked the package's files (its `.list` file's mtime), if installed."""
    try:
        return os.stat(list_file(admin_dir, package)).st_mtime
    except OSError:
        return None


def unpack_stamps(admin_dir: str, packages: Iterable[str]) -> dict[str, int]:
    """`.list` mtimes in nanoseconds: a changed stamp with an unchanged version is a reinstall."""
    stamps = {}
    for package in packages:
        try:
            stamps[package] = os.stat(list_file(admin_dir, package)).st_mtime_ns
        except OSError:
            continue
    return stamps


def package_files(admin_dir: str, package: str) -> list[str]:
    try:
        with open(list_file(admin_dir, package), encoding="utf-8", errors="surrogateescape") as f:
            return [line for line in f.read().splitlines() if line.startswith("/")]
    except OSError:
        return []


@dataclass(frozen=True)
class ShippedServices:
    """The services a package ships: sysv init script names and systemd `.service` units."""

    init_scripts: tuple[str, ...]
    units: tuple[str, ...]

    def names(self, systemd: bool) -> list[str]:
        """Service names as events name them (no `.service`), for the running init system.

        Under systemd an init script is a unit too (systemd-sysv-generator makes one); under
        sysv init only init scripts can run.
        """
        names = set(self.init_scripts)
        if systemd:
            names.update(canonical_service(unit) for unit in self.units)
        return sorted(names)


def shipped_services(files: Iterable[str]) -> ShippedServices:
    """Find `/etc/init.d/<name>` and `<unit dir>/<name>.service` (not templates) in a file list."""
    scripts: set[str] = set()
    units: set[str] = set()
    for path in files:
        if path.startswith(_INIT_DIR):
            name = path[len(_INIT_DIR) :]
            if "/" not in name and is_valid_service_name(name) and not name.startswith("."):
                scripts.add(name)
            continue
        for directory in _UNIT_DIRS:
            if path.startswith(directory):
                name = path[len(directory) :]
                if (
                    "/" not in name
                    and name.endswith(".service")
                    and not name.endswith("@.service")
                    and is_valid_service_name(name)
                ):
                    units.add(name)
    return ShippedServices(tuple(sorted(scripts)), tuple(sorted(units)))


class FileOwners:
    """Which package installed a file, for the files below some directories (lazy, cached)."""

    def __init__(self, admin_dir: str, prefixes: tuple[str, ...]) -> None:
        self.admin_dir = admin_dir
        self.prefixes = tuple(prefix.encode() for prefix in prefixes)
        self._owners: dict[bytes, str] | None = None

    def _load(self) -> dict[bytes, str]:
        owners: dict[bytes, str] = {}
        info = os.path.join(self.admin_dir, "info")
        try:
            names = os.listdir(info)
        except OSError:
            return owners
        for name in names:
            if not name.endswith(".list"):
                continue
            try:
                with open(os.path.join(info, name), "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            package = name[: -len(".list")]
            for line in data.split(b"\n"):
                if line.startswith(self.prefixes):
                    owners[line] = package
        return owners

    def owner(self, path: str) -> str | None:
        if self._owners is None:
            self._owners = self._load()
        return self._owners.get(os.fsencode(path))
