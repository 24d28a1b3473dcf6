"""Throw-away labs for tests and demos: a fresh name and a free subnet, torn down however it ends.

with running_lab(tmp_path, hosts=20, controllers=2, lbs=1) as lab:
    lab.exec("ctl1", ["hostname"])
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from interlock.lab import network
from interlock.lab.errors import LabError
from interlock.lab.lab import Lab

# Private space that real networks on a test machine rarely use.
SCRATCH_POOL = "10.240.0.0/12"
_random = random.SystemRandom()


def pick_subnet(prefixlen: int = 24, pool: str = SCRATCH_POOL) -> str:
    """A subnet of `pool` no route on this machine overlaps (random, so parallel runs differ)."""
    candidates = list(ipaddress.IPv4Network(pool).subnets(new_prefix=prefixlen))
    _random.shuffle(candidates)
    for candidate in candidates[:200]:
        if not network.overlapping_routes(str(candidate), own_device=""):
            return str(candidate)
    raise LabError(f"no free /{prefixlen} left in {pool}")


def pick_name(prefix: str = "t") -> str:
    """A lab name no namespace or link on this machine uses yet."""
    alphabet = string.ascii_lowercase + string.digits
    for _ in range(100):
        name = prefix + "".join(_random.choice(alphabet) for _ in range(7 - len(prefix)))
        if not network.netns_names(f"{name}-") and not network.link_names(f"{name}-"):
            return name
    raise LabError("could not find a free lab name")


@contextmanager
def running_lab(
    directory: Path,
    *,
    hosts: int,
    controllers: int = 2,
    lbs: int = 1,
    pid_namespace: bool = False,
    api_delay_ms: int = 0,
    package_overlays: bool = False,
    systemd: int = 0,
) -> Iterator[Lab]:
    """A lab that is up inside the block and down after it, also when the block raises."""
    lab = Lab(directory, name=pick_name(), subnet=pick_subnet())
    try:
        lab.up(
            hosts=hosts,
            controllers=controllers,
            lbs=lbs,
            pid_namespace=pid_namespace,
            api_delay_ms=api_delay_ms,
            package_overlays=package_overlays,
            systemd=systemd,
        )
        yield lab
    finally:
        lab.down()
