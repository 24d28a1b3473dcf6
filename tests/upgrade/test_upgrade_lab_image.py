"""The lab's package overlays, as files: what each host mounts and where its files go."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.errors import UsageError
from interlock.lab.image import dpkg_snapshot, layer_names, render_host_conf, upper_path
from interlock.lab.spec import LabSpec


def test_package_overlays_give_each_host_its_own_usr_opt_var_cache_and_dpkg() -> None:
    spec = LabSpec(Path("/var/tmp/lab"), hosts=3, controllers=1, lbs=1, package_overlays=True)
    ctl1 = spec.plan()[1]
    conf = render_host_conf(spec, ctl1)
    overlays = next(line for line in conf.splitlines() if line.startswith("OVERLAYS="))
    entries = overlays.removeprefix("OVERLAYS=").strip("'").split()
    assert entries == [
        "/etc:etc:/etc",
        "/var/lib:var-lib:/var/lib",
        f"/var/lib/dpkg:var-lib-dpkg:{dpkg_snapshot(spec.directory)}",
        "/var/log:var-log:/var/log",
        "/var/cache:var-cache:/var/cache",
        "/usr:usr:/usr",
        "/opt:opt:/opt",
    ]
    layers = layer_names(spec.overlaid_trees)
    assert upper_path(Path("/h"), "/usr/sbin/runlevel", layers) == Path(
        "/h/upper/usr/sbin/runlevel"
    )
    assert upper_path(Path("/h"), "/var/lib/dpkg/status", layers) == Path(
        "/h/upper/var-lib-dpkg/status"
    )
    # Without them, the lab is as before: /usr/sbin only.
    plain = render_host_conf(LabSpec(Path("/var/tmp/lab"), hosts=3, controllers=1, lbs=1), ctl1)
    assert "/usr/sbin:usr-sbin:/usr/sbin" in plain and "/usr:usr" not in plain


def test_a_lab_directory_inside_a_package_tree_is_refused() -> None:
    with pytest.raises(UsageError, match="lies under /var/cache"):
        LabSpec(Path("/var/cache/lab"), hosts=3, controllers=1, lbs=1, package_overlays=True)
    LabSpec(Path("/var/cache/lab"), hosts=3, controllers=1, lbs=1)
