"""Which boot a host is in, and whether it asks for a reboot.

The boot id (`/proc/sys/kernel/random/boot_id`) is new at every boot: two reads that differ saw a
reboot in between, whatever the clocks say. "Reboot required" is Debian's flag file
`/run/reboot-required` (with the packages that asked for it in `/run/reboot-required.pkgs`), which
package scripts write; host-side detection that decides more (a newer kernel) writes the same
flag, so this remote read stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.facts.sections import new_marker, split_sections

REBOOT_REQUIRED = "/run/reboot-required"

SCRIPT = r"""
m=$1; flag=$2
echo "$m boot"; read -r id < /proc/sys/kernel/random/boot_id || :; printf '%s\n' "$id"
if [ -e "$flag" ]; then
  echo "$m reboot-required"; cat -- "$flag.pkgs" 2>/dev/null || :
fi
exit 0
"""


@dataclass(frozen=True)
class BootFact:
    boot_id: str
    reboot_required: bool = False
    packages: tuple[str, ...] = ()  # the packages that asked for the reboot, as the flag says


def command(marker: str | None = None, flag: str = REBOOT_REQUIRED) -> list[str]:
    return ["sh", "-c", SCRIPT, "boot", marker or new_marker(), flag]


def parse(text: str, marker: str) -> BootFact:
    boot_id: str | None = None
    required = False
    packages: list[str] = []
    for header, body in split_sections(text, marker):
        if header == ["boot"]:
            boot_id = body.strip()
        elif header == ["reboot-required"]:
            required = True
            packages = [line.strip() for line in body.splitlines() if line.strip()]
    if not boot_id:
        raise ValueError(f"no boot id in the output: {text[:120]!r}")
    return BootFact(boot_id, required, tuple(dict.fromkeys(packages)))
