"""The host's ledger as Prometheus metrics, for node_exporter's textfile collector.

`interlock status --metrics /var/lib/prometheus/node-exporter/interlock.prom` (from cron or a
timer) lets a fleet's dashboards and alerts see deferred restarts: how many, of which service,
since when (the oldest event's timestamp, so the age is `time() - …` in PromQL), which hooks wait,
whether auto restarts are off, whether any ledger file is unreadable, and whether the host needs a
reboot.
"""

from __future__ import annotations

from collections import Counter

from interlock.errors import FileFormatError
from interlock.host.hooks import DeferredHook
from interlock.host.ledger import DeferredEvent
from interlock.host.reboot import RebootNeed
from interlock.observe.prometheus import family

PREFIX = "interlock"


def render_ledger_metrics(
    events: list[DeferredEvent],
    hooks: list[DeferredHook],
    problems: list[FileFormatError],
    blocked: list[str],
    reboot: RebootNeed | None = None,
) -> str:
    per_service: Counter[tuple[str, str, str]] = Counter(
        (event.unit, event.action, event.requestor) for event in events
    )
    oldest: dict[str, int] = {}
    for event in events:
        oldest[event.unit] = min(oldest.get(event.unit, event.timestamp), event.timestamp)
    lines = family(
        f"{PREFIX}_deferred_restarts",
        "gauge",
        "Deferred events in the ledger, by service, action and requestor.",
        (
            ({"service": service, "action": action, "requestor": requestor}, count)
            for (service, action, requestor), count in sorted(per_service.items())
        ),
    )
    lines += family(
        f"{PREFIX}_deferred_restart_oldest_timestamp_seconds",
        "gauge",
        "When the oldest deferred event of each service was recorded (Unix time).",
        (({"service": service}, stamp) for service, stamp in sorted(oldest.items())),
    )
    lines += family(
        f"{PREFIX}_deferred_hooks",
        "gauge",
        "Hooks deferred while auto restarts are off, by name.",
        (({"hook": name}, count) for name, count in sorted(Counter(h.name for h in hooks).items())),
    )
    lines += family(
        f"{PREFIX}_auto_restarts_off",
        "gauge",
        "1 when interlock's policy blocks restarts (for the services labelled; * is all).",
        (({"service": service}, 1) for service in blocked),
    )
    lines += family(
        f"{PREFIX}_ledger_unreadable_files",
        "gauge",
        "Ledger and hook files that could not be read.",
        [({}, len(problems))],
    )
    if reboot is not None:
        lines += family(
            f"{PREFIX}_reboot_required",
            "gauge",
            "1 when the host needs a reboot (/run/reboot-required, or a newer kernel installed).",
            [({}, int(reboot.needed))],
        )
        lines += family(
            f"{PREFIX}_reboot_newer_kernels",
            "gauge",
            "Installed kernels newer than the running one.",
            [({}, len(reboot.newer_kernels))],
        )
    return "\n".join(lines) + "\n"
