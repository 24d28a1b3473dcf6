"""systemd: `systemctl show` says whether a unit runs and which invocation of it runs.

The parser reads only machine-stable values: `InvocationID` (new at every start),
`ActiveEnterTimestamp` in `--timestamp=unix` form (`@<epoch>`), or else
`ActiveEnterTimestampMonotonic` (microseconds since boot) plus the boot time from `/proc/stat`.
The human timestamp text, which depends on locale and time zone, is never parsed.
"""

from __future__ import annotations

import subprocess

from interlock.host.services.base import ServiceError, ServiceManager, ServiceState
from interlock.host.services.sysv import read_boot_time
from interlock.host.services.units import unit_type

PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "InvocationID",
    "ActiveEnterTimestamp",
    "ActiveEnterTimestampMonotonic",
)


def unit_name(service: str) -> str:
    return service if "." in service.rsplit("@", 1)[-1] else f"{service}.service"


def show_command(units: list[str], unix_timestamps: bool = True) -> list[str]:
    argv = ["systemctl", "show"]
    if unix_timestamps:
        argv.append("--timestamp=unix")  # systemd >= 248
    for prop in PROPERTIES:
        argv += ["-p", prop]
    return [*argv, "--", *units]


def parse_show(text: str) -> list[dict[str, str]]:
    """Split `systemctl show` output into one property dict per unit (blank-line separated)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def state_from_properties(
    name: str, props: dict[str, str], boot_time: float | None
) -> ServiceState:
    """One unit's properties → ServiceState; raises ValueError on values that make no sense."""
    if props.get("LoadState") == "not-found":
        return ServiceState(name, active=False)
    active = props.get("ActiveState") in ("active", "reloading")
    pid = int(props.get("MainPID") or 0) or None
    invocation = props.get("InvocationID") or None
    started_at: float | None = None
    stamp = props.get("ActiveEnterTimestamp", "")
    monotonic = int(props.get("ActiveEnterTimestampMonotonic") or 0)
    if stamp.startswith("@") and stamp[1:].isdigit():
        # `@N` is the start time truncated to the second: N is a lower bound, good as it is.
        started_at = float(stamp[1:])
    elif monotonic > 0 and boot_time is not None:
        started_at = boot_time + monotonic / 1_000_000
    if not active:
        return ServiceState(name, active=False, invocation=invocation)
    return ServiceState(name, True, pid, started_at, invocation=invocation)


class SystemdManager(ServiceManager):
    kind = "systemd"

    def __init__(self) -> None:
        self._unix_timestamps = True

    def _show(self, names: list[str]) -> list[dict[str, str]]:
        units = [unit_name(name) for name in names]
        result = subprocess.run(
            show_command(units, self._unix_timestamps),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "SYSTEMD_PAGER": ""},
        )
        if result.returncode != 0 and self._unix_timestamps and "timestamp" in result.stderr:
            self._unix_timestamps = False  # systemd < 248: fall back to monotonic times
            return self._show(names)
        if result.returncode != 0:
            raise ServiceError(f"systemctl show failed: {result.stderr.strip()}")
        return parse_show(result.stdout)

    def states(self, names: list[str]) -> dict[str, ServiceState]:
        boot = read_boot_time()
        blocks = self._show(names)
        if len(blocks) != len(names):
            raise ServiceError(f"systemctl show returned {len(blocks)} units for {len(names)}")
        return {
            name: state_from_properties(name, props, boot)
            for name, props in zip(names, blocks, strict=True)
        }

    def state(self, name: str) -> ServiceState:
        return self.states([name])[name]

    def exists(self, name: str) -> bool:
        return self._show([name])[0].get("LoadState") not in (None, "not-found")

    def act(self, name: str, action: str) -> None:
        kind = unit_type(name)
        if kind not in ("service", "socket"):
            # The unit-type rule (interlock.host.services.units), kept here too so that no
            # caller can restart a target, mount or other non-service unit by mistake.
            raise ServiceError(f"{name}: a {kind} unit is not restartable")
        unit = unit_name(name)
        if action == "restart" and unit.endswith(".socket"):
            self._restart_socket(name, unit)
        else:
            self._systemctl(name, action, [unit])

    def _systemctl(
        self, name: str, action: str, units: list[str], options: tuple[str, ...] = ()
    ) -> str:
        result = subprocess.run(
            ["systemctl", action, *options, "--", *units],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "SYSTEMD_PAGER": ""},
        )
        if result.returncode != 0:
            raise ServiceError(f"systemctl {action} {name} failed: {result.stderr.strip()}")
        return result.stdout

    def _restart_socket(self, name: str, unit: str) -> None:
        """Restart a socket unit and the services it passes connections to.

        systemd refuses to start a socket again while a service it activated still runs
        ("Socket service ... already active, refusing"), so the services stop with it, the socket
        starts, and the services that ran before start again on the new socket. A socket that
        neither runs nor is enabled is left alone, as deb-systemd-invoke would leave it.
        """
        options = ("-p", "ActiveState,UnitFileState,Triggers")
        text = self._systemctl(name, "show", [unit], options)
        props = parse_show(text)[0] if text.strip() else {}
        active = props.get("ActiveState") in ("active", "reloading")
        if not active and props.get("UnitFileState") not in ("enabled", "enabled-runtime"):
            raise ServiceError(
                f"{name} is neither running nor enabled ({props.get('UnitFileState', '?')}): "
                f"there is nothing to restart; `interlock clear {name}` forgets its events"
            )
        services = props.get("Triggers", "").split()
        running = [s for s, state in self.states(services).items() if state.active]
        self._systemctl(name, "stop", [unit, *services])
        self._systemctl(name, "start", [unit, *running])
