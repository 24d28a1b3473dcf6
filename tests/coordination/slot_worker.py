"""One actor for the concurrency test: take a slot, mark it held on disk, let go; N times.

argv: URL DIRECTORY NAME ROUNDS LIMIT. It waits for DIRECTORY/go so all actors start together,
and appends to DIRECTORY/counts how many markers it saw (its own included) while it held a slot.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from interlock.coordination.backend import Group
from interlock.coordination.etcd import parse_url
from interlock.coordination.etcd_slots import EtcdCoordination


async def main(url: str, directory: Path, name: str, rounds: int, limit: int) -> None:
    coordination = EtcdCoordination(parse_url(url), ttl=5)
    await coordination.open(name, "test", "concurrency")
    held = directory / "held"
    while not (directory / "go").exists():
        await asyncio.sleep(0.01)
    try:
        for index in range(rounds):
            host = f"{name}-h{index}"
            await coordination.acquire(host, [Group("role=shared", limit)], lambda _: None)
            marker = held / host
            marker.touch()
            seen = len(os.listdir(held))
            with (directory / "counts").open("a") as counts:
                counts.write(f"{seen}\n")
            await asyncio.sleep(0.005)
            marker.unlink()
            await coordination.release(host)
    finally:
        await coordination.close()


if __name__ == "__main__":
    url, directory, name, rounds, limit = sys.argv[1:6]
    asyncio.run(main(url, Path(directory), name, int(rounds), int(limit)))
