"""lab.json: what a lab created, written before anything exists so `down` undoes a crashed `up`."""

from __future__ import annotations

import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interlock.errors import FileFormatError
from interlock.host.atomic import write_atomic
from interlock.lab.spec import LabHost, LabSpec

STATE_FILE = "lab.json"
VERSION = 1

# Phases of a lab's life, in order: names exist / host processes run / every host answered.
STARTING = "starting"
BOOTING = "booting"
UP = "up"


@dataclass(frozen=True)
class LabState:
    spec: LabSpec
    phase: str
    hosts: tuple[LabHost, ...]
    keeper_pid: int | None = None
    created: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise KeyError(f"no lab host named {name!r} (hosts: {known})")


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def render_state(state: LabState) -> str:
    spec = asdict(state.spec)
    spec["directory"] = str(state.spec.directory)
    document = {
        "version": VERSION,
        "phase": state.phase,
        "created": state.created,
        "keeper_pid": state.keeper_pid,
        "bridge": state.spec.bridge,
        "subnet": state.spec.subnet,
        "gateway": state.spec.gateway,
        "spec": spec,
        "timings": state.timings,
        "hosts": [asdict(host) for host in state.hosts],
    }
    return json.dumps(document, indent=2) + "\n"


def parse_state(text: str, path: str) -> LabState:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
    try:
        if document.get("version") != VERSION:
            raise FileFormatError(path, f"unsupported version {document.get('version')!r}")
        spec_fields: dict[str, Any] = dict(document["spec"])
        spec_fields["directory"] = Path(spec_fields["directory"])
        hosts = []
        for entry in document["hosts"]:
            entry = dict(entry)
            entry["groups"] = tuple(entry["groups"])
            hosts.append(LabHost(**entry))
        return LabState(
            spec=LabSpec(**spec_fields),
            phase=str(document["phase"]),
            hosts=tuple(hosts),
            keeper_pid=document.get("keeper_pid"),
            created=float(document.get("created", 0.0)),
            timings=dict(document.get("timings", {})),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FileFormatError(path, f"missing or malformed field: {exc}") from None


def load_state(directory: Path) -> LabState | None:
    """The recorded state, or None when no lab was ever started in `directory`."""
    path = state_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_state(text, str(path))


def save_state(state: LabState) -> None:
    # The lab keeper rewrites the hosts' PIDs when one reboots, under the same lock.
    path = state_path(state.spec.directory)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_atomic(str(path), render_state(state).encode())
