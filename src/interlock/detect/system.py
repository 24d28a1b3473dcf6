"""The live system detection reads: /proc, dpkg's database, init scripts, and interlock's files.

interlock's own files (policies, ledger, state, the restart map) can live under another root, as
`interlock --root DIR` asks; processes, packages and services are always this machine's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from interlock.detect.dpkg import ADMIN_DIR
from interlock.host.paths import HostPaths
from interlock.host.services import ServiceManager, SystemdManager, SysvManager
from interlock.host.services.sysv import INIT_DIR

WATCH_DIR = "/etc/interlock/watch.d"


def systemd_running() -> bool:
    """The test systemd's own tools use: the directory exists only while systemd is init."""
    return os.path.isdir("/run/systemd/system")


@dataclass(frozen=True)
class System:
    paths: HostPaths = field(default_factory=HostPaths)
    watch_dir: Path = Path(WATCH_DIR)
    proc: str = "/proc"
    dpkg_dir: str = ADMIN_DIR
    init_dir: str = INIT_DIR
    systemd: bool = False

    @classmethod
    def live(cls, root: str | Path = "/") -> System:
        """This machine, with interlock's files under `root`."""
        if Path(root) == Path("/"):
            return cls(HostPaths(), Path(WATCH_DIR), systemd=systemd_running())
        base = Path(root)
        return cls(HostPaths.under(base), base / WATCH_DIR.lstrip("/"), systemd=systemd_running())

    def manager(self) -> ServiceManager:
        return SystemdManager() if self.systemd else SysvManager(self.init_dir)

    @property
    def log_file(self) -> Path:
        """Where the apt hooks log, next to the gate's log."""
        return self.paths.gate_log.parent / "apt-hooks.log"
