"""Auto restarts off/on: interlock's own policy file in /etc/policy-rc.d.

`off` writes `interlock.policy` (requestor interlock:interlock) blocking restart, stop and
try-restart for the named services, or for every service (`'*'`) when none is named. While the file
exists, deferred hooks are recorded instead of run.
"""

from __future__ import annotations

from pathlib import Path

from interlock.errors import FileFormatError, UsageError
from interlock.host.atomic import write_atomic
from interlock.host.policy import (
    ANY_SERVICE,
    DISRUPTIVE_ACTIONS,
    canonical_service,
    is_valid_service_name,
    parse_policy,
    render_policy,
)
from interlock.host.trusted_file import POLICY_MAX_BYTES, read_text

POLICY_NAME = "interlock.policy"
REQUESTOR = ("interlock", "interlock")  # (type, name)


def policy_path(policy_dir: Path) -> Path:
    return policy_dir / POLICY_NAME


def blocked_services(policy_dir: Path) -> list[str]:
    """The services interlock's policy blocks (`'*'` for all); empty when auto restarts are on."""
    path = policy_path(policy_dir)
    try:
        text = read_text(str(path), POLICY_MAX_BYTES)
    except FileNotFoundError:
        return []
    return sorted(parse_policy(text, str(path)).blocked)


def validate_services(services: list[str]) -> list[str]:
    bad = [name for name in services if not is_valid_service_name(name)]
    if bad:
        raise UsageError(f"not a valid service name: {', '.join(map(repr, bad))}")
    return sorted({canonical_service(name) for name in services})


def set_auto_restarts(policy_dir: Path, enabled: bool, services: list[str]) -> list[str]:
    """Turn auto restarts on or off (for `services`, or for all); return what stays blocked."""
    wanted = validate_services(services)
    try:
        current = set(blocked_services(policy_dir))
    except FileFormatError:
        current = set()  # a broken file of ours is rewritten from what the operator asks now
    if enabled and wanted and current == {ANY_SERVICE} and ANY_SERVICE not in wanted:
        raise UsageError(
            "auto restarts are off for every service; turn them on for all "
            "(auto-restarts on) and off again for the services to keep blocked"
        )
    if enabled:
        remaining = set() if not wanted or ANY_SERVICE in wanted else current - set(wanted)
    else:
        remaining = {ANY_SERVICE} if not wanted else (current | set(wanted))
        if ANY_SERVICE in remaining:
            remaining = {ANY_SERVICE}
    path = policy_path(policy_dir)
    if not remaining:
        path.unlink(missing_ok=True)
        return []
    policy_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    blocked = {service: list(DISRUPTIVE_ACTIONS) for service in sorted(remaining)}
    write_atomic(str(path), render_policy(REQUESTOR[1], REQUESTOR[0], blocked), mode=0o644)
    return sorted(remaining)
