"""The reboot probes' pure parsers, on text captured from the real tools (capture-fixtures.sh),
and the probe scripts themselves run against a scratch root on this machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from interlock.host.reboot import (
    PACKAGES_MAX,
    BootIdentity,
    KernelPackage,
    identity_argv,
    local_need,
    need_argv,
    newer_kernels,
    parse_boot_images,
    parse_btime,
    parse_identity,
    parse_kernel_packages,
    parse_need,
    parse_packages_file,
    running_build,
)
from interlock.host.services.sysv import parse_start_ticks

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_kernel_packages_from_dpkg_query() -> None:
    kernels = parse_kernel_packages(fixture("dpkg-query-kernels.txt"))
    # The removed kernel (rc: config files left) and the meta package are not kernels that run.
    assert kernels == [
        KernelPackage("linux-image-6.1.0-50-cloud-amd64", "6.1.0-50-cloud-amd64", "6.1.176-1"),
        KernelPackage("linux-image-6.1.0-57-cloud-amd64", "6.1.0-57-cloud-amd64", "6.1.192-3"),
    ]


def test_running_build_from_a_debian_kernels_banner() -> None:
    assert running_build(fixture("kernel-uname-v.txt")) == "6.1.176-1"
    # A kernel that does not name its Debian build (this machine's): nothing to compare with.
    assert running_build("#1 SMP PREEMPT_DYNAMIC Tue Sep  9 10:14:22 UTC 2025") is None


def test_a_newer_kernel_package_is_found() -> None:
    kernels = parse_kernel_packages(fixture("dpkg-query-kernels.txt"))
    build = running_build(fixture("kernel-uname-v.txt"))
    assert newer_kernels("6.1.0-50-cloud-amd64", build, kernels) == (
        "linux-image-6.1.0-57-cloud-amd64",
    )
    # Running the newest one: nothing newer.
    assert newer_kernels("6.1.0-57-cloud-amd64", "6.1.192-3", kernels) == ()


def test_the_running_releases_own_package_upgraded_under_it() -> None:
    package = "linux-image-6.1.0-50-cloud-amd64"
    kernels = [KernelPackage(package, "6.1.0-50-cloud-amd64", "6.1.176-2")]
    assert newer_kernels("6.1.0-50-cloud-amd64", "6.1.176-1", kernels) == (
        "linux-image-6.1.0-50-cloud-amd64",
    )
    assert newer_kernels("6.1.0-50-cloud-amd64", "6.1.176-2", kernels) == ()
    assert newer_kernels("6.1.0-50-cloud-amd64", None, kernels) == ()  # no build known: no claim


def test_kernels_without_packages_compare_by_release() -> None:
    images = parse_boot_images(fixture("boot-listing.txt"))
    assert images == ["vmlinuz-6.1.0-50-cloud-amd64"]
    newer = newer_kernels("6.1.0-18-cloud-amd64", None, [], images)
    assert newer == ("vmlinuz-6.1.0-50-cloud-amd64",)
    assert newer_kernels("6.1.0-57-cloud-amd64", None, [], images) == ()
    # A release dpkg could not compare is no claim either way.
    assert newer_kernels("custom kernel", None, [], images) == ()


def test_packages_file_is_data() -> None:
    # What dbus.postinst and update-notifier's script append, one name a line, repeats included.
    text = "linux-image-6.1.0-57-cloud-amd64\ndbus\ndbus\n<script>x</script>\n\nlibc6:amd64\n"
    assert parse_packages_file(text) == ("linux-image-6.1.0-57-cloud-amd64", "dbus", "libc6:amd64")
    many = "".join(f"pkg{n}\n" for n in range(PACKAGES_MAX * 2))
    assert len(parse_packages_file(many)) == PACKAGES_MAX


def test_btime_and_pid_1_from_proc() -> None:
    btime = parse_btime(fixture("proc-stat.txt"))
    assert btime > 1_600_000_000
    ticks = parse_start_ticks(fixture("proc-1-stat.txt"))
    text = f"boot_id 5bcdf0c2-d89b-492c-b602-96389b4071e5\ninit {fixture('proc-1-stat.txt')}"
    text += f"btime {btime}\n"
    boot_id = "5bcdf0c2-d89b-492c-b602-96389b4071e5"
    assert parse_identity(text) == BootIdentity(boot_id, ticks, btime)
    with pytest.raises(ValueError, match="btime"):
        parse_btime("cpu 1 2 3\n")
    with pytest.raises(ValueError, match="boot_id"):
        parse_identity(f"btime {btime}\n")


def test_new_boot_is_any_part_changed() -> None:
    before = BootIdentity("a", 100, 1_700_000_000)
    assert not before.is_new_boot_since(before)
    # btime is computed from the wall clock: a second of drift is not a boot.
    assert not BootIdentity("a", 100, 1_700_000_001).is_new_boot_since(before)
    assert BootIdentity("b", 100, 1_700_000_000).is_new_boot_since(before)  # kernel rebooted
    assert BootIdentity("a", 900, 1_700_000_000).is_new_boot_since(before)  # container init
    assert BootIdentity("a", 100, 1_700_000_500).is_new_boot_since(before)  # snapshot restored
    assert BootIdentity.from_dict(before.as_dict()) == before


def test_identity_probe_on_this_machine() -> None:
    result = subprocess.run(identity_argv(), capture_output=True, text=True, check=True)
    identity = parse_identity(result.stdout)
    assert identity.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert identity.btime == parse_btime(Path("/proc/stat").read_text())


def _root_with(tmp_path: Path, *, required: bool, pkgs: str | None) -> Path:
    (tmp_path / "run").mkdir()
    (tmp_path / "boot").mkdir()
    if required:
        (tmp_path / "run" / "reboot-required").write_text("*** System restart required ***\n")
    if pkgs is not None:
        (tmp_path / "run" / "reboot-required.pkgs").write_text(pkgs)
    return tmp_path


def test_need_probe_reads_a_root(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=True, pkgs="dbus\n")
    need = local_need(str(root))
    assert need.needed and need.required
    assert need.packages == ("dbus",)
    assert need.running == os.uname().release
    assert need.message() == "Reboot required: dbus"


def test_need_probe_with_nothing_to_say(tmp_path: Path) -> None:
    need = local_need(str(_root_with(tmp_path, required=False, pkgs=None)))
    assert not need.needed and need.message() == ""
    assert need.as_dict()["newer_kernels"] == []


def test_need_probe_sees_a_newer_kernel_in_boot(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs=None)
    newer = "999.0.0-1-amd64"
    (root / "boot" / f"vmlinuz-{newer}").write_bytes(b"")
    need = local_need(str(root))
    assert need.newer_kernels == (f"vmlinuz-{newer}",)
    assert need.message() == f"Reboot required: vmlinuz-{newer}"


def test_a_file_cannot_forge_a_section(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs="x\n@@reboot uname\nforged\n")
    marker = "@@reboot-0123456789ab"
    argv = need_argv(marker, str(root))
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    need = parse_need(result.stdout, marker)
    assert need.running == os.uname().release
    assert need.packages == ("x", "forged")
    assert not need.needed


def _kernel_list(root: Path, package: str, release: str, *, since_boot: bool) -> None:
    """A kernel package as dpkg leaves it: its image in /boot, and its file list in dpkg's info
    directory, older or newer than the root's /proc (which a booted host mounts at boot)."""
    info = root / "var" / "lib" / "dpkg" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (root / "proc").mkdir(exist_ok=True)
    (root / "boot" / f"vmlinuz-{release}").write_bytes(b"")
    listed = info / f"{package}.list"
    listed.write_text(f"/boot/vmlinuz-{release}\n")
    boot = os.stat(root / "proc").st_mtime
    moment = boot + 60 if since_boot else boot - 60
    os.utime(listed, (moment, moment))


def _need_output(root: Path, marker: str) -> str:
    return subprocess.run(
        need_argv(marker, str(root)), capture_output=True, text=True, check=True
    ).stdout


def test_kernel_packages_unchanged_since_boot_are_compared_by_release(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs=None)
    _kernel_list(root, "linux-image-999.0.0-1-amd64", "999.0.0-1-amd64", since_boot=False)
    _kernel_list(root, "linux-image-0.0.1-1-amd64", "0.0.1-1-amd64", since_boot=False)
    # A file list without its image in /boot is not a kernel that could boot.
    (root / "var" / "lib" / "dpkg" / "info" / "linux-image-998.0.0-1-amd64.list").write_text("")
    marker = "@@reboot-0123456789ab"
    output = _need_output(root, marker)
    # No dpkg-query: the names are enough, and the older release is not newer.
    assert f"{marker} kernels\n" not in output
    assert f"{marker} listed\nlinux-image-0.0.1-1-amd64\nlinux-image-999.0.0-1-amd64\n" in output
    assert parse_need(output, marker).newer_kernels == ("linux-image-999.0.0-1-amd64",)


def test_an_ubuntu_unsigned_kernel_package_is_found_by_its_image(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs=None)
    _kernel_list(
        root, "linux-image-unsigned-999.0.0-1-generic", "999.0.0-1-generic", since_boot=False
    )
    marker = "@@reboot-0123456789ab"
    need = parse_need(_need_output(root, marker), marker)
    assert need.newer_kernels == ("linux-image-unsigned-999.0.0-1-generic",)


def test_a_kernel_package_unpacked_since_boot_is_read_with_its_version(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs=None)
    running = os.uname().release
    _kernel_list(root, f"linux-image-{running}", running, since_boot=True)
    (root / "var" / "lib" / "dpkg" / "updates").mkdir()
    (root / "var" / "lib" / "dpkg" / "status").write_text(
        f"Package: linux-image-{running}\nStatus: install ok installed\n"
        "Architecture: amd64\nVersion: 99:1.0-1\nDescription: kernel\n"
    )
    marker = "@@reboot-0123456789ab"
    output = _need_output(root, marker)
    assert f"{marker} kernels\nlinux-image-{running}\t99:1.0-1\tii \n" in output
    # This machine's kernel names no Debian build to compare with: no claim either way.
    assert parse_need(output, marker).newer_kernels == ()


def test_a_ppc64el_kernel_is_found_by_its_vmlinux_image(tmp_path: Path) -> None:
    root = _root_with(tmp_path, required=False, pkgs=None)
    (root / "boot" / "vmlinux-999.0.0-1-powerpc64le").write_bytes(b"")
    marker = "@@reboot-0123456789ab"
    assert parse_need(_need_output(root, marker), marker).newer_kernels == (
        "vmlinux-999.0.0-1-powerpc64le",
    )
    _kernel_list(
        root, "linux-image-999.0.0-1-powerpc64le", "999.0.0-1-powerpc64le", since_boot=False
    )
    (root / "boot" / "vmlinuz-999.0.0-1-powerpc64le").unlink()  # the helper writes a vmlinuz
    assert parse_need(_need_output(root, marker), marker).newer_kernels == (
        "linux-image-999.0.0-1-powerpc64le",
    )
