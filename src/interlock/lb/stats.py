"""Pure parsers of haproxy runtime-API replies: `show stat`, `show servers state|conn`.

Columns are found by their header names, never by position, because haproxy versions add columns.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from interlock.errors import InterlockError

# srv_admin_state bits (haproxy's enum srv_admin).
ADMIN_FORCED_MAINT = 0x01
ADMIN_INHERITED_MAINT = 0x02
ADMIN_CONFIG_MAINT = 0x04
ADMIN_FORCED_DRAIN = 0x08
ADMIN_INHERITED_DRAIN = 0x10
ADMIN_RESOLUTION_MAINT = 0x20
ADMIN_MAINT_MASK = (
    ADMIN_FORCED_MAINT | ADMIN_INHERITED_MAINT | ADMIN_CONFIG_MAINT | ADMIN_RESOLUTION_MAINT
)
ADMIN_DRAIN_MASK = ADMIN_FORCED_DRAIN | ADMIN_INHERITED_DRAIN

# srv_op_state values (haproxy's enum srv_state).
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
# `show stat` column "type".
STAT_KINDS = {"0": "frontend", "1": "backend", "2": "server", "3": "listener"}
SERVERS_STATE_VERSION = "1"


class ReplyFormatError(InterlockError):
    """A reply is not in the format of the command that was sent (often: it is an error text)."""


@dataclass(frozen=True)
class StatRow:
    """One row of `show stat`: a frontend, a backend, a server or a listener."""

    proxy: str
    name: str
    kind: str
    status: str
    scur: int
    qcur: int | None
    stot: int | None
    weight: int | None
    addr: str | None
    check_status: str | None

    @property
    def is_up(self) -> bool:
        # "no check" is a server without health checks: haproxy treats it as up.
        return self.status in ("UP", "no check")


@dataclass(frozen=True)
class ServerState:
    """One server of `show servers state`: where it points and its operational/admin state."""

    backend_id: int
    backend: str
    server_id: int
    server: str
    address: str
    port: int | None
    op_state: int
    admin_state: int
    user_weight: int
    fqdn: str | None

    @property
    def in_maintenance(self) -> bool:
        return bool(self.admin_state & ADMIN_MAINT_MASK)

    @property
    def draining(self) -> bool:
        return bool(self.admin_state & ADMIN_DRAIN_MASK)

    @property
    def admin(self) -> str:
        """The state `set server ... state` would have set: maint wins over drain."""
        if self.in_maintenance:
            return "maint"
        if self.draining:
            return "drain"
        return "ready"

    @property
    def operational(self) -> str:
        return OP_STATES.get(self.op_state, f"unknown({self.op_state})")


@dataclass(frozen=True)
class ServerConn:
    """One server of `show servers conn`: connections to it in use and idle."""

    backend: str
    server: str
    address: str
    port: int | None
    used_cur: int
    used_max: int
    idle_cur: int


def parse_show_stat(text: str) -> list[StatRow]:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# pxname,svname,"):
        raise ReplyFormatError(f"show stat: expected a '# pxname,svname,' header, got {head(text)}")
    header = lines[0][2:].rstrip(",").split(",")
    required = ("pxname", "svname", "status", "scur", "qcur", "type")
    missing = [name for name in required if name not in header]
    if missing:
        raise ReplyFormatError(f"show stat: header lacks {', '.join(missing)}")
    rows: list[StatRow] = []
    for number, values in enumerate(csv.reader(lines[1:]), start=2):
        if not values:
            continue
        if len(values) < len(header):
            raise ReplyFormatError(
                f"show stat: line {number} has {len(values)} fields, header has {len(header)}"
            )
        field = dict(zip(header, values, strict=False))
        rows.append(
            StatRow(
                proxy=field["pxname"],
                name=field["svname"],
                kind=STAT_KINDS.get(field["type"], field["type"]),
                status=field["status"],
                scur=to_int(field["scur"], "show stat", number, "scur") or 0,
                qcur=to_int(field["qcur"], "show stat", number, "qcur"),
                stot=to_int(field.get("stot", ""), "show stat", number, "stot"),
                weight=to_int(field.get("weight", ""), "show stat", number, "weight"),
                addr=field.get("addr") or None,
                check_status=field.get("check_status") or None,
            )
        )
    return rows


def parse_show_servers_state(text: str) -> list[ServerState]:
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != SERVERS_STATE_VERSION or not lines[1].startswith("# "):
        raise ReplyFormatError(
            f"show servers state: expected format version {SERVERS_STATE_VERSION} and a header, "
            f"got {head(text)}"
        )
    header = lines[1][2:].split()
    states: list[ServerState] = []
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        field = fields_by_name("show servers state", header, line.split(), number)
        port = to_int(field.get("srv_port", "-"), "show servers state", number, "srv_port")
        states.append(
            ServerState(
                backend_id=need_int(field, "be_id", "show servers state", number),
                backend=field["be_name"],
                server_id=need_int(field, "srv_id", "show servers state", number),
                server=field["srv_name"],
                address=field["srv_addr"],
                port=port or None,
                op_state=need_int(field, "srv_op_state", "show servers state", number),
                admin_state=need_int(field, "srv_admin_state", "show servers state", number),
                user_weight=need_int(field, "srv_uweight", "show servers state", number),
                fqdn=none_if_dash(field.get("srv_fqdn", "-")),
            )
        )
    return states


def parse_show_servers_conn(text: str) -> list[ServerConn]:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# bkname/svname "):
        raise ReplyFormatError(
            f"show servers conn: expected a '# bkname/svname' header, got {head(text)}"
        )
    # The last column ("idle_per_thr[N]") spans one value per thread: only the names before it.
    header = [name for name in lines[0][2:].split() if "[" not in name]
    conns: list[ServerConn] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        field = fields_by_name("show servers conn", header, line.split(), number)
        backend, sep, server = field["bkname/svname"].partition("/")
        if not sep:
            raise ReplyFormatError(f"show servers conn: line {number}: expected BACKEND/SERVER")
        port = to_int(field.get("port", "-"), "show servers conn", number, "port")
        conns.append(
            ServerConn(
                backend=backend,
                server=server,
                address=field["addr"],
                port=port or None,
                used_cur=need_int(field, "used_cur", "show servers conn", number),
                used_max=need_int(field, "used_max", "show servers conn", number),
                idle_cur=need_int(field, "idle_cur", "show servers conn", number),
            )
        )
    return conns


def fields_by_name(
    command: str, header: Sequence[str], values: Sequence[str], number: int
) -> dict[str, str]:
    if len(values) < len(header):
        raise ReplyFormatError(
            f"{command}: line {number} has {len(values)} fields, header has {len(header)}"
        )
    return dict(zip(header, values, strict=False))


def need_int(field: Mapping[str, str], name: str, command: str, number: int) -> int:
    if name not in field:
        raise ReplyFormatError(f"{command}: header lacks {name}")
    value = to_int(field[name], command, number, name)
    if value is None:
        raise ReplyFormatError(f"{command}: line {number}: {name} is empty")
    return value


def to_int(text: str, command: str, number: int, name: str) -> int | None:
    if text in ("", "-"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ReplyFormatError(
            f"{command}: line {number}: {name} is not a number: {text!r}"
        ) from None


def none_if_dash(text: str) -> str | None:
    return None if text in ("", "-") else text


def head(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        return "an empty reply"
    line = stripped.splitlines()[0]
    return repr(line if len(line) <= 120 else line[:120] + "…")
