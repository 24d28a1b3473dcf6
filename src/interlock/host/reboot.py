"""Reboots: whether a host needs one, and which boot it is in. Each probe is a command plus a
pure parser, run locally by `interlock status` and over SSH by the fleet and the rollout.

A host needs a reboot when `/run/reboot-required` exists (its `.pkgs` file names the packages
that asked), or when a kernel newer than the running one is installed: another `linux-image-*`
package (or `/boot/vmlinuz-*`, ppc64el's `vmlinux-*`) with a newer version, or the running
release's own package upgraded under it (`uname -v` names the build that runs, Debian's
`Debian 6.1.76-1`).

A boot is (boot_id, PID 1's start in clock ticks since boot, btime). The kernel's boot_id alone
is not enough: a container host's init restarts without the kernel rebooting, and every restore
of a VM snapshot shares one boot_id (its btime differs).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from interlock.host.script_output import BUFFERED
from interlock.host.services.sysv import parse_start_ticks
from interlock.package_version import compare_versions

REQUIRED_FILE = "/run/reboot-required"
PACKAGES_FILE = "/run/reboot-required.pkgs"
# Values read from a host are data: at most this much of the .pkgs file, this many names.
PACKAGES_BYTES = 4096
PACKAGES_MAX = 64
# btime is whole seconds computed from the wall clock: it may move by one without a reboot.
BTIME_SLACK = 1

# A bash function (bash is Essential on Debian and Ubuntu), so the ledger fact runs it in its own
# session: "$1" is a marker no file content can forge, "$2" the root the host's files are read
# under. Builtins wherever they do: a fleet status pays each process on every host. The kernels
# are the images in /boot; the package of each is found by its file list in dpkg's info
# directory (Debian's linux-image-RELEASE, Ubuntu's linux-image-unsigned-RELEASE too), one
# stat each rather than a listing of that directory's thousands of files. dpkg-query reads the
# whole package database, so it runs only when a kernel package was unpacked since this kernel
# booted (its file list is newer than /proc, which is mounted at boot): only then can versions
# say more than the releases in the packages' names, which are otherwise compared as versions.
NEED_FUNCTION = r"""
reboot_need() {
  local m=$1 root=${2%/} line f release version package since_boot=no
  local -x LC_ALL=C
  local -a images=() packages=()
  read -r release < /proc/sys/kernel/osrelease; read -r version < /proc/sys/kernel/version
  put "$m uname" "$release" "$version" "$m required"
  if [[ -e $root/run/reboot-required ]]; then put yes; else put no; fi
  put "$m pkgs"
  line=""; IFS= read -r -d '' -N __BYTES__ line 2>/dev/null < "$root/run/reboot-required.pkgs"
  put "$line"
  for f in "$root"/boot/vmlinu[xz]-*; do
    [[ -e $f ]] || continue
    images+=("${f##*/}")
    release=${f##*/vmlinu[xz]-}
    for package in "linux-image-$release" "linux-image-unsigned-$release"; do
      f=$root/var/lib/dpkg/info/$package.list
      [[ -f $f ]] || continue
      packages+=("$package")
      [[ $f -nt $root/proc ]] && since_boot=yes
    done
  done
  if [[ $since_boot = yes ]]; then
    put "$m kernels"
    flush
    dpkg-query --admindir="$root/var/lib/dpkg" -W \
        -f='${Package}\t${Version}\t${db:Status-Abbrev}\n' 'linux-image-*' 2>/dev/null
  else
    put "$m listed" "${packages[@]}"
  fi
  put "$m boot" "${images[@]}"
  return 0
}
""".replace("__BYTES__", str(PACKAGES_BYTES))

NEED_SCRIPT = BUFFERED + NEED_FUNCTION + 'reboot_need "$1" "$2"\n'


IDENTITY_SCRIPT = r"""
read -r id < /proc/sys/kernel/random/boot_id && echo "boot_id $id"
read -r stat < /proc/1/stat && echo "init $stat"
sed -n 's/^btime /btime /p' /proc/stat
"""

_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.:-]{0,99}")
_KERNEL_PACKAGE = re.compile(r"linux-image-(?:unsigned-)?(\d[A-Za-z0-9.+~_-]*)")
_DEBIAN_BUILD = re.compile(r"\bDebian (\S+)")
_UBUNTU_BUILD = re.compile(r"^#(\d+)(?:~\S+)?-Ubuntu\b")


@dataclass(frozen=True)
class KernelPackage:
    package: str
    release: str  # what `uname -r` says when it runs
    version: str


@dataclass(frozen=True)
class RebootNeed:
    running: str  # uname -r
    required: bool = False  # /run/reboot-required exists
    packages: tuple[str, ...] = ()  # named in /run/reboot-required.pkgs
    newer_kernels: tuple[str, ...] = ()  # installed kernel packages newer than the running one

    @property
    def needed(self) -> bool:
        return self.required or bool(self.newer_kernels)

    @property
    def reasons(self) -> tuple[str, ...]:
        """What asks for the reboot: packages, newest kernel first among them."""
        return tuple(dict.fromkeys([*self.newer_kernels, *self.packages]))

    def message(self) -> str:
        """`Reboot required: linux-image-…, libc6`, or "" when no reboot is needed."""
        if not self.needed:
            return ""
        reasons = self.reasons
        return "Reboot required" + (": " + ", ".join(reasons) if reasons else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "needed": self.needed,
            "running_kernel": self.running,
            "reboot_required_file": self.required,
            "packages": list(self.packages),
            "newer_kernels": list(self.newer_kernels),
        }


@dataclass(frozen=True)
class BootIdentity:
    boot_id: str
    init_start: int  # PID 1's start, clock ticks since boot
    btime: int  # boot time, epoch seconds (/proc/stat)

    def is_new_boot_since(self, before: BootIdentity) -> bool:
        return (
            self.boot_id != before.boot_id
            or self.init_start != before.init_start
            or abs(self.btime - before.btime) > BTIME_SLACK
        )

    def as_dict(self) -> dict[str, object]:
        return {"boot_id": self.boot_id, "init_start": self.init_start, "btime": self.btime}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BootIdentity:
        return cls(str(data["boot_id"]), int(str(data["init_start"])), int(str(data["btime"])))


# --- commands -----------------------------------------------------------------------------------


def need_argv(marker: str, root: str = "/") -> list[str]:
    return ["bash", "-c", NEED_SCRIPT, "reboot-need", marker, root]


def identity_argv() -> list[str]:
    return ["sh", "-c", IDENTITY_SCRIPT]


# --- pure parsers -------------------------------------------------------------------------------


def parse_packages_file(text: str) -> tuple[str, ...]:
    """/run/reboot-required.pkgs: one package per line, as the packages' scripts append them
    (repeats included). Only well-formed names, at most PACKAGES_MAX of them."""
    names: list[str] = []
    for line in text.splitlines():
        name = line.strip()
        if _PACKAGE.fullmatch(name) and name not in names:
            names.append(name)
    return tuple(names[:PACKAGES_MAX])


def parse_kernel_packages(text: str) -> list[KernelPackage]:
    """`dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' 'linux-image-*'`:
    the installed (state `i`) kernel images; meta packages (linux-image-amd64) name no release."""
    kernels: list[KernelPackage] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        package, version, status = parts
        match = _KERNEL_PACKAGE.fullmatch(package.partition(":")[0])
        if match and version and len(status) >= 2 and status[1] == "i":
            kernels.append(KernelPackage(package.partition(":")[0], match[1], version))
    return kernels


def parse_listed_kernels(text: str) -> list[KernelPackage]:
    """Kernel packages named by their file lists in dpkg's info directory, versions unknown."""
    kernels: list[KernelPackage] = []
    for line in text.splitlines():
        package = line.strip().partition(":")[0]
        match = _KERNEL_PACKAGE.fullmatch(package)
        if match:
            kernels.append(KernelPackage(package, match[1], ""))
    return kernels


_IMAGE_PREFIXES = ("vmlinuz-", "vmlinux-")  # vmlinux: ppc64el's kernel images


def parse_boot_images(text: str) -> list[str]:
    """The kernel images in /boot, by name (`vmlinuz-6.1.0-18-amd64`)."""
    return [
        name
        for name in (line.strip() for line in text.splitlines())
        if name.startswith(_IMAGE_PREFIXES) and len(name) > len(_IMAGE_PREFIXES[0])
    ]


def running_build(uname_version: str) -> str | None:
    """The package version of the running build from `uname -v`, when the kernel says it:
    Debian's `#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)`; Ubuntu's `#101-Ubuntu`
    is the ABI's upload number only, which the release already carries."""
    match = _DEBIAN_BUILD.search(uname_version)
    return match[1] if match else None


def _newer(left: str, right: str) -> bool:
    try:
        return compare_versions(left, right) > 0
    except ValueError:
        return False  # not a version dpkg could compare: no claim either way


def newer_kernels(
    running: str,
    build: str | None,
    kernels: Sequence[KernelPackage],
    boot_images: Sequence[str] = (),
) -> tuple[str, ...]:
    """Kernel packages (or /boot images) newer than the one running, newest first.

    With the running release's package and its version known, another package is newer when
    its version is; the running release's own package is newer when `uname -v` names an older
    build. Without them (a kernel not from a package, or versions not read because no kernel
    package changed since boot), releases are compared as versions."""
    own = next((k for k in kernels if k.release == running and k.version), None)
    found: list[tuple[str, str]] = []
    for kernel in kernels:
        if kernel.release == running:
            if build is not None and kernel.version and _newer(kernel.version, build):
                found.append((kernel.version, kernel.package))
        elif own is not None and kernel.version:
            if _newer(kernel.version, own.version):
                found.append((kernel.version, kernel.package))
        elif _newer(kernel.release, running):
            found.append((kernel.release, kernel.package))
    packaged = {kernel.release for kernel in kernels}
    for image in boot_images:
        release = image[len(_IMAGE_PREFIXES[0]) :]
        if release != running and release not in packaged and _newer(release, running):
            found.append((release, image))
    found.sort(key=lambda item: _SortKey(item[0]), reverse=True)
    return tuple(dict.fromkeys(name for _, name in found))


class _SortKey:
    """Orders versions as dpkg does (for sorting newest first)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def __lt__(self, other: _SortKey) -> bool:
        try:
            return compare_versions(self.version, other.version) < 0
        except ValueError:
            return self.version < other.version


def split_sections(text: str, marker: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    prefix = marker + " "
    for line in text.split("\n"):
        if line.startswith(prefix):
            current = sections.setdefault(line[len(prefix) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def parse_need(text: str, marker: str) -> RebootNeed:
    """The need probe's output; ValueError when it is not there at all."""
    sections = split_sections(text, marker)
    if "uname" not in sections:
        raise ValueError("the reboot probe printed nothing recognisable")
    uname = sections["uname"].strip().split("\n")
    running = uname[0].strip()
    build = running_build(uname[1]) if len(uname) > 1 else None
    kernels = parse_kernel_packages(sections.get("kernels", "")) + parse_listed_kernels(
        sections.get("listed", "")
    )
    return RebootNeed(
        running=running,
        required=sections.get("required", "").strip() == "yes",
        packages=parse_packages_file(sections.get("pkgs", "")),
        newer_kernels=newer_kernels(
            running, build, kernels, parse_boot_images(sections.get("boot", ""))
        ),
    )


def parse_btime(text: str) -> int:
    """`btime N` from /proc/stat."""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "btime" and words[1].isdigit():
            return int(words[1])
    raise ValueError("no btime line")


def parse_identity(text: str) -> BootIdentity:
    """The identity probe's output (`boot_id …`, `init <stat of PID 1>`, `btime …`)."""
    boot_id = init = None
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "boot_id" and rest.strip():
            boot_id = rest.strip()
        elif kind == "init" and rest:
            init = parse_start_ticks(rest)
    if boot_id is None or init is None:
        raise ValueError("the boot identity probe is missing boot_id or PID 1's stat")
    return BootIdentity(boot_id, init, parse_btime(text))


# --- this host ------------------------------------------------------------------------------------


def local_need(root: str = "/", timeout: float = 30.0) -> RebootNeed:
    """This host's need, read with the same probe the fleet runs over SSH."""
    marker = "@@reboot-" + os.urandom(6).hex()
    result = subprocess.run(
        need_argv(marker, root), capture_output=True, timeout=timeout, check=False
    )
    return parse_need(result.stdout.decode("utf-8", "replace"), marker)


def local_identity() -> BootIdentity:
    result = subprocess.run(identity_argv(), capture_output=True, timeout=10, check=False)
    return parse_identity(result.stdout.decode("utf-8", "replace"))
