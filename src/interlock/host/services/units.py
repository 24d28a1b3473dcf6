"""What interlock may restart: the unit-type rule for deferred events.

The gate records whatever a package asks about, and on systemd hosts deb-systemd-invoke asks
about more than services (openssh-server's postinst: `rescue-ssh.target restart`,
`ssh.socket restart`). Acting on those is not the same thing as restarting a daemon: restarting
`poweroff.target` powers the host off. So applying events is deliberate:

- a plain name (`cron`, `hwclock.sh`: a suffix that is not a systemd unit type is part of the
  name) or a `.service` unit (`cron.service`, `getty@tty1.service`) is restarted and verified;
- any other unit that is *dormant* (loaded, neither active nor enabled) is settled without
  running anything: the package's own restart of it would have done nothing, since
  deb-systemd-invoke skips "a disabled or a static unit not running". That is Debian's
  `ssh.socket` (disabled: ssh.service listens itself, and starting the socket beside it fails on
  the busy port) and `rescue-ssh.target` (static), which every openssh-server upgrade with auto
  restarts off records;
- a `.socket` unit that is active or enabled is restarted together with the services it triggers,
  as systemd requires (it refuses to listen again while a service it activated runs): the running
  ones stop with it, the socket starts, they start again on it. It is verified by the socket's new
  InvocationID, and a service that ran and now runs as a new instance counts as restarted too;
- every other unit type (target, mount, automount, swap, device, path, timer, slice, scope) that
  is active or enabled is never acted on: reported as not restartable, its events stay until
  `interlock clear UNIT`.

A socket's service (`ssh` for `ssh.socket`) is restarted on its own only when an event names it.
Names are validated before anything runs; an invalid one is refused like a foreign unit type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from interlock.host.policy import canonical_service, is_valid_service_name

UNIT_TYPES = frozenset(
    (
        "service",
        "socket",
        "target",
        "mount",
        "automount",
        "swap",
        "device",
        "path",
        "timer",
        "slice",
        "scope",
    )
)


def unit_type(name: str) -> str:
    """The systemd unit type a name carries; `service` for a plain (sysv-style) name."""
    suffix = name.rsplit("@", 1)[-1].rpartition(".")[2] if "." in name else ""
    return suffix if suffix in UNIT_TYPES else "service"


@dataclass(frozen=True)
class RestartGroup:
    """One service and, when an event names it, its socket: the socket's restart involves the
    service, so they are decided together."""

    service: str
    service_owed: bool  # an event names the service itself (not only its socket)
    socket: str | None  # `NAME.socket` when an event names it

    @property
    def units(self) -> tuple[str, ...]:
        """The ledger units this group answers for."""
        return (self.service,) * self.service_owed + ((self.socket,) if self.socket else ())


@dataclass(frozen=True)
class Refusal:
    unit: str
    reason: str
    settles_when_dormant: bool = False  # a unit type interlock never acts on, validly named


@dataclass(frozen=True)
class RestartPlan:
    groups: tuple[RestartGroup, ...]
    refused: tuple[Refusal, ...]


def plan_restarts(units: Iterable[str]) -> RestartPlan:
    """Sort ledger units into services to restart (sockets joined to theirs) and refusals."""
    owed: dict[str, bool] = {}
    sockets: dict[str, str] = {}
    refused: list[Refusal] = []
    for unit in sorted(set(units)):
        if not is_valid_service_name(unit) or "/" in unit:
            refused.append(Refusal(unit, "not a valid service name"))
            continue
        kind = unit_type(unit)
        if kind == "service":
            service = canonical_service(unit)
            owed[service] = True
        elif kind == "socket":
            service = unit[: -len(".socket")]
            sockets[service] = unit
            owed.setdefault(service, False)
        else:
            reason = f"not restartable: a {kind} unit is never acted on by interlock"
            refused.append(Refusal(unit, reason, settles_when_dormant=True))
    groups = tuple(
        RestartGroup(service, owed[service], sockets.get(service)) for service in sorted(owed)
    )
    return RestartPlan(groups, tuple(refused))
