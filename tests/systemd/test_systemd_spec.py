"""Which hosts are systemd hosts, and the layer each one boots with (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.errors import UsageError
from interlock.lab.image import render_etc_hosts
from interlock.lab.spec import LabSpec
from interlock.lab.sshd import LabKeys
from interlock.lab.systemd_host import build_layer


def test_the_first_hosts_of_the_plan_are_the_systemd_ones(tmp_path: Path) -> None:
    spec = LabSpec(directory=tmp_path, hosts=5, controllers=2, lbs=1, systemd=2)
    plan = spec.plan()
    assert [(h.name, h.kind) for h in plan] == [
        ("lb1", "systemd"),
        ("ctl1", "systemd"),
        ("ctl2", "sysv"),
        ("cmp1", "sysv"),
        ("cmp2", "sysv"),
    ]
    assert plan[1].labels == {"az": "az1", "role": "controller", "kind": "systemd"}
    assert "kind" not in plan[2].labels
    with pytest.raises(UsageError, match="--systemd must be between 0 and --hosts"):
        LabSpec(directory=tmp_path, hosts=5, controllers=2, lbs=1, systemd=6)


def test_a_controllers_layer_holds_its_unit_keys_and_sshd_drop_in(tmp_path: Path) -> None:
    keys = LabKeys(*(tmp_path / name for name in ("client", "host", "authorized", "known")))
    keys.host_key.write_text("PRIVATE")
    keys.authorized_keys.write_text("ssh-ed25519 AAAA client\n")
    spec = LabSpec(directory=tmp_path / "lab", hosts=3, controllers=1, lbs=1, systemd=3)
    plan = spec.plan()
    image = tmp_path / "image"
    hostdir = build_layer(spec, plan[1], plan, keys, render_etc_hosts(plan), image)
    upper = hostdir / "upper"
    unit = (upper / "etc/systemd/system/lab-api.service").read_text()
    assert f"--bind {plan[1].address}:8080" in unit and "--name ctl1" in unit
    link = upper / "etc/systemd/system/multi-user.target.wants/lab-api.service"
    assert link.readlink() == Path("/etc/systemd/system/lab-api.service")
    dropin = (upper / "etc/ssh/sshd_config.d/interlock-lab.conf").read_text()
    assert f"ListenAddress {plan[1].address}" in dropin
    assert "HostKey /etc/ssh/lab_host_ed25519_key" in dropin
    assert "Subsystem" not in dropin  # Debian's sshd_config defines it; twice is an error
    assert (upper / "etc/ssh/lab_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert not (upper / "etc/ssh/sshd_config").exists()  # Debian's stays as shipped
    conf = (hostdir / "host.conf").read_text()
    assert f"IMAGE={image}\n" in conf and f"NETNS={plan[1].netns}\n" in conf
    lb = build_layer(spec, plan[0], plan, keys, render_etc_hosts(plan), image) / "upper"
    assert "server ctl1" in (lb / "etc/haproxy/haproxy.cfg").read_text()
    assert (lb / "etc/systemd/system/multi-user.target.wants/haproxy.service").is_symlink()
