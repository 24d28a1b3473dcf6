"""Service managers: how to restart a service and tell whether it really restarted."""

from __future__ import annotations

import os

from interlock.host.services.base import ServiceManager, ServiceState
from interlock.host.services.systemd import SystemdManager
from interlock.host.services.sysv import SysvManager

__all__ = ["ServiceManager", "ServiceState", "SystemdManager", "SysvManager", "detect_manager"]


def detect_manager(root: str = "/") -> ServiceManager:
    """systemd when it is running as init (the check systemd's own tools use), else sysv."""
    if os.path.isdir(os.path.join(root, "run/systemd/system")):
        return SystemdManager()
    return SysvManager(root)
