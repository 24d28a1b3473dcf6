"""Which coordination a run uses: `local` (the default) or `etcd://host:port,…`."""

from __future__ import annotations

from interlock.coordination.backend import Coordination, LocalCoordination

LOCAL = "local"


def check_coordination(text: str) -> str:
    """Validate a coordination address (UsageError naming it when wrong); returns it."""
    if text != LOCAL:
        from interlock.coordination.etcd import parse_url

        parse_url(text)
    return text


def open_coordination(text: str | None) -> Coordination:
    if text is None or text == LOCAL:
        return LocalCoordination()
    from interlock.coordination.etcd import parse_url
    from interlock.coordination.etcd_slots import DEFAULT_TTL, EtcdCoordination

    url = parse_url(text)
    return EtcdCoordination(url, url.ttl or DEFAULT_TTL)
