"""The systemd hosts' image recipe: which mirror it builds from, and when it is rebuilt."""

from __future__ import annotations

from dataclasses import replace

from interlock.lab.rootfs import PACKAGES, Recipe, debian_mirror, image_dir

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
