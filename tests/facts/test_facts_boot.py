"""The boot fact on output of a lab host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interlock.facts import boot

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
MARKER = "@@interlock-fixture"


def test_boot_id_and_the_reboot_flag_with_its_packages() -> None:
    plain = boot.parse((FIXTURES / "boot-cmp1.txt").read_text(), MARKER)
    flagged = boot.parse((FIXTURES / "boot-cmp1-reboot-required.txt").read_text(), MARKER)
    assert len(plain.boot_id) == 36 and not plain.reboot_required and plain.packages == ()
    assert flagged.boot_id == plain.boot_id
    assert flagged.reboot_required and flagged.packages == ("linux-image-amd64", "libc6")
    with pytest.raises(ValueError, match="no boot id"):
        boot.parse("", MARKER)


def test_the_command_reads_this_machines_boot_and_a_flag(tmp_path: Path) -> None:
    flag = tmp_path / "reboot-required"
    marker = "@@m"

    def run() -> str:
        argv = boot.command(marker, str(flag))
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    own = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot.parse(run(), marker) == boot.BootFact(own)
    flag.touch()
    assert boot.parse(run(), marker) == boot.BootFact(own, True, ())
