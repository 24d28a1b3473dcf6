"""How the ledger is shown: the charms' status line and `show-deferred-events` YAML, and JSON."""

from __future__ import annotations

from interlock.host.hooks import DeferredHook
from interlock.host.ledger import DeferredEvent

SERVICES_PREFIX = "Services queued for restart: "
HOOKS_PREFIX = "Hooks skipped due to disabled auto restarts: "
NOTHING_DEFERRED = "No restarts or hooks deferred"


def status_message(events: list[DeferredEvent], hooks: list[DeferredHook]) -> str:
    """The charms' wording: services sorted and unique (`x.service` counts as `x`), then hooks."""
    parts = []
    services = sorted({event.unit for event in events})
    if services:
        parts.append(SERVICES_PREFIX + ", ".join(services))
    hook_names = sorted({hook.name for hook in hooks})
    if hook_names:
        parts.append(HOOKS_PREFIX + ", ".join(hook_names))
    return ". ".join(parts) if parts else NOTHING_DEFERRED


def with_reboot(message: str, reboot: str) -> str:
    """The status line with the reboot's part appended (`Reboot required: …`), when there is one;
    the charms' wording before it stays as it is."""
    if not reboot:
        return message
    return reboot if message == NOTHING_DEFERRED else f"{message}. {reboot}"


def charm_restart_line(event: DeferredEvent) -> str:
    return f"{event.timestamp} {event.service.ljust(40)} {event.reason}"


def charm_show(events: list[DeferredEvent], hooks: list[DeferredHook]) -> str:
    """Exactly what the charms' `show-deferred-events` action prints (PyYAML block style)."""
    import yaml

    data = {
        "hooks": sorted({hook.name for hook in hooks}),
        "restarts": sorted(charm_restart_line(event) for event in events),
    }
    return str(yaml.safe_dump(data, default_flow_style=False))
