"""What interlock may restart: the unit-type rule for deferred events.

The gate records whatever a package asks about, and on systemd hosts deb-systemd-invoke asks
about more than services (openssh-server's postinst: `rescue-ssh.target restart`,
`ssh.socket restart`). Acting on those is not the same thing as restarting a daemon: restarting
`poweroff.target` powers the host off. So applying events is deliberate:

- a plain name (`cron`, `hwclock.sh`: a suffix that is not a systemd unit type is part of the
  name) or a `.service` unit (`cron.service`, `getty@tty1.service`) is restarted and verified;
- a `.socket` unit goes with the service of the same name (`ssh.socket` with `ssh`). If the socket
  is not listening (Debian's `ssh.socket` is off by default and conflicts with `ssh.service`:
  starting it would stop sshd), the service's verified restart settles its events. If it is
  listening and its service is not running (socket activation), the socket itself is restarted
  and verified. If both are running, systemd would refuse to restart the socket without stopping
  the service: its events stay, reported, for the operator;
- every other unit type (target, mount, automount, swap, device, path, timer, slice, scope) is
  never acted on: reported as not restartable, its events stay until `interlock clear UNIT`.

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
    """One service to restart and the ledger units its restart may settle."""

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
            refused.append(
                Refusal(unit, f"not restartable: a {kind} unit is never acted on by interlock")
            )
    groups = tuple(
        RestartGroup(service, owed[service], sockets.get(service)) for service in sorted(owed)
    )
    return RestartPlan(groups, tuple(refused))
