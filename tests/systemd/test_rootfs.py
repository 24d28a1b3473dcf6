"""The systemd hosts' image recipe: which mirror it builds from, and when it is rebuilt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from interlock.lab.rootfs import PACKAGES, Recipe, debian_mirror, image_dir, mount_points_under

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
"""
ONE_LINE = """deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb [arch=amd64] http://mirror.example.org/debian/ bookworm main contrib
deb http://security.debian.org/debian-security bookworm-security main
"""


def test_the_machines_debian_mirror_is_found_in_either_sources_format() -> None:
    assert debian_mirror(DEB822) == "http://deb.debian.org/debian"
    assert debian_mirror(ONE_LINE) == "http://mirror.example.org/debian"
    assert debian_mirror("deb https://deb.nodesource.com/node_20.x nodistro main\n") is None


def test_a_changed_recipe_names_a_new_image() -> None:
    recipe = Recipe(mirror="http://deb.debian.org/debian")
    assert image_dir(recipe) == image_dir(Recipe(mirror="http://deb.debian.org/debian"))
    fewer = replace(recipe, packages=tuple(p for p in PACKAGES if p != "rabbitmq-server"))
    other_setup = replace(recipe, setup=recipe.setup + "true\n")
    digests = {recipe.digest, fewer.digest, other_setup.digest}
    assert len(digests) == 3


def test_mounts_left_by_a_crashed_build_are_found_before_any_removal() -> None:
    mountinfo = (
        "22 1 0:21 / /proc rw - proc proc rw\n"
        "90 28 0:5 /null /var/tmp/images/.ab.building-7/root/dev/null rw - devtmpfs udev rw\n"
        "91 28 0:22 / /var/tmp/images/.ab.building-7/root/proc rw - proc proc rw\n"
        "92 28 0:23 / /var/tmp/images/.ab.building-70/root/proc rw - proc proc rw\n"
    )
    building = Path("/var/tmp/images/.ab.building-7")
    assert mount_points_under(building, mountinfo) == [
        "/var/tmp/images/.ab.building-7/root/dev/null",
        "/var/tmp/images/.ab.building-7/root/proc",
    ]
    assert mount_points_under(Path("/var/tmp/images/ab"), mountinfo) == []
