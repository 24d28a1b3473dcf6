"""Service managers: how to restart a service and tell whether it really restarted."""

from __future__ import annotations

import os

from interlock.host.services.base import ServiceManager, ServiceState
from interlock.host.services.systemd import SystemdManager
from interlock.host.services.sysv import SysvManager

__all__ = ["ServiceManager", "ServiceState", "SystemdManager", "SysvManager", "detect_manager"]


def detect_manager() -> ServiceManager:
    """systemd when it is running as init (the check systemd's own tools use), else sysv.

    Services are always this machine's live ones, also under `interlock --root`.
    """
    if os.path.isdir("/run/systemd/system"):
        return SystemdManager()
    return SysvManager()
