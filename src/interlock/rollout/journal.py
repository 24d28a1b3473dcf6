"""The journal: every run, host and step state in SQLite, so a killed run resumes where it was.

Durability: WAL mode and one transaction per state change; a SIGKILL at any point leaves either
the state before a change or the state after it. Records that come *before* an action (a run
created or resumed, a step started, a lease) are synced to disk (`synchronous=FULL`) before the
action. Records of what already happened (a step's outcome, a host claimed or finished) are
committed without their own fsync: the next synced record, at the latest the run's final state,
carries them to disk with it, since the WAL is synced as a whole. A power loss can therefore
lose only outcomes that a kill just before recording them would have lost too, and a resumed
run already checks those again (a step found started is verified or redone).

Exclusion has two parts. A *lease* row per host, taken in the same transaction that creates the
run and held until the run completes or is aborted, stops another run from targeting those hosts
(even while this one is paused or was killed: its hosts may be half-done). A *run lock*, an
`flock` on a file next to the database, is held by the process executing a run; the kernel drops
it when that process dies, so a lease whose run lock is free belongs to an interrupted run that
`resume` or `abort` may take over, and two processes can never execute the same run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.errors import InterlockError
from interlock.host.atomic import unique_suffix
from interlock.rollout.plan import Plan
from interlock.rollout.states import (
    HOST_FINAL,
    RUN_ACTIVE,
    RUN_FINAL,
    HostState,
    RunKind,
    RunState,
    StepState,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    plan TEXT NOT NULL,
    settings TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    run TEXT NOT NULL REFERENCES runs(id),
    batch TEXT NOT NULL,
    host TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    fingerprint TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run, batch, host)
);
CREATE INDEX IF NOT EXISTS hosts_by_name ON hosts (host, fingerprint);
CREATE TABLE IF NOT EXISTS steps (
    run TEXT NOT NULL,
    batch TEXT NOT NULL,
    host TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    started REAL,
    finished REAL,
    detail TEXT,
    data TEXT,
    PRIMARY KEY (run, batch, host, step)
);
CREATE TABLE IF NOT EXISTS step_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    batch TEXT NOT NULL,
    host TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS step_log_by_run ON step_log (run, seq);
CREATE TABLE IF NOT EXISTS leases (
    host TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    since REAL NOT NULL
);
"""


class JournalError(InterlockError):
    """The journal cannot be opened or does not hold what was asked for."""


class HostsLeased(InterlockError):
    """Another run holds some of the hosts; the message says which run and what to do."""


class RunBusy(InterlockError):
    """Another process is executing this run right now."""


def default_journal_path() -> Path:
    """Per user: $XDG_STATE_HOME/interlock/journal.sqlite, else ~/.local/state/interlock/…"""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "interlock" / "journal.sqlite"


@dataclass(frozen=True)
class RunRecord:
    id: str
    created: float
    updated: float
    state: RunState
    reason: str | None
    plan_json: str
    settings: dict[str, Any]
    kind: RunKind

    @property
    def plan(self) -> Plan:
        try:
            return Plan.from_json(self.plan_json)
        except ValueError as exc:
            raise JournalError(f"run {self.id}: its stored plan cannot be read ({exc})") from None

    @property
    def finished(self) -> bool:
        return self.state in RUN_FINAL


@dataclass(frozen=True)
class HostRecord:
    run: str
    batch: str
    host: str
    position: int
    state: HostState
    attempt: int
    detail: str | None
    fingerprint: str
    updated: float


@dataclass(frozen=True)
class StepRecord:
    run: str
    batch: str
    host: str
    step: str
    attempt: int
    state: StepState
    started: float | None
    finished: float | None
    detail: str | None
    data: dict[str, Any]

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class LogEntry:
    seq: int
    batch: str
    host: str
    step: str
    attempt: int
    state: StepState
    at: float
    detail: str | None


class RunLock:
    """An exclusive flock held while a process executes a run; released by close or death."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self, remove: bool = False) -> None:
        if self.fd < 0:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = -1


class Journal:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=30000")
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                _add_run_kinds(self.db)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise JournalError(f"{self.path} is not a usable journal: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One state change: BEGIN IMMEDIATE takes the write lock up front, so checks and
        writes inside see no other writer in between. `synced=False` for a record of what has
        already happened: it reaches the disk with the next synced one (see the module doc)."""
        if not synced:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            if not synced:
                self.db.execute("PRAGMA synchronous=FULL")

    # --- runs -------------------------------------------------------------------------------

    def create_run(
        self,
        plan: Plan,
        settings: dict[str, Any],
        *,
        kind: RunKind = RunKind.ROLLOUT,
        done_before: dict[tuple[str, str], str] | None = None,
    ) -> RunRecord:
        """Record a new run and take the leases on its hosts, or refuse if another run holds one.

        `done_before` maps (host, work fingerprint) pairs that another run finished to that
        run's id: they start as done, so a repeated run does nothing for them.
        """
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + unique_suffix()[:6]
        now = time.time()
        host_plans = plan.hosts
        names = sorted({hp.host.name for hp in host_plans})
        carried = done_before or {}
        with self.transaction() as db:
            self._check_leases(db, names)
            db.execute(
                "INSERT INTO runs (id, created, updated, state, reason, plan, settings, kind) "
                "VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    run_id,
                    now,
                    now,
                    RunState.RUNNING,
                    plan.to_json(),
                    json.dumps(settings, sort_keys=True),
                    kind,
                ),
            )
            position = 0
            for batch in plan.batches:
                for host_plan in batch.hosts:
                    name = host_plan.host.name
                    earlier = carried.get((name, host_plan.fingerprint))
                    state, detail = (
                        (HostState.DONE, f"already done in run {earlier}")
                        if earlier
                        else (HostState.PENDING, None)
                    )
                    db.execute(
                        "INSERT INTO hosts (run, batch, host, position, state, attempt, detail, "
                        "fingerprint, updated) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                        (
                            run_id,
                            batch.id,
                            name,
                            position,
                            state,
                            detail,
                            host_plan.fingerprint,
                            now,
                        ),
                    )
                    position += 1
            db.executemany(
                "INSERT INTO leases (host, run, since) VALUES (?, ?, ?)",
                [(name, run_id, now) for name in names],
            )
        return self.run(run_id)

    def _check_leases(self, db: sqlite3.Connection, names: Sequence[str]) -> None:
        holders: dict[str, list[str]] = {}
        for chunk in _chunks(names, 500):
            marks = ",".join("?" * len(chunk))
            for host, run in db.execute(
                f"SELECT host, run FROM leases WHERE host IN ({marks})",  # noqa: S608
                chunk,
            ):
                holders.setdefault(run, []).append(host)
        problems: list[str] = []
        for run_id, hosts in sorted(holders.items()):
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row[0] in RUN_FINAL:
                # A run that ended without releasing (it cannot, but be lenient): not a holder.
                db.execute("DELETE FROM leases WHERE run = ?", (run_id,))
                continue
            shown = ", ".join(sorted(hosts)[:5]) + (" …" if len(hosts) > 5 else "")
            if self.is_alive(run_id):
                problems.append(f"run {run_id} is executing on {shown}")
            else:
                problems.append(
                    f"run {run_id} ({row[0]}, not executing) holds {shown}: "
                    f"`interlock rollout resume {run_id}` or `interlock rollout abort {run_id}`"
                )
        if problems:
            raise HostsLeased("hosts are taken by another rollout: " + "; ".join(problems))

    def run(self, run_id: str) -> RunRecord:
        row = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608
            (run_id,),
        ).fetchone()
        if row is None:
            raise JournalError(f"no run {run_id!r} in {self.path}")
        return _run_record(row)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs "  # noqa: S608
            "ORDER BY created DESC, id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_run_record(row) for row in rows]

    def latest_run(self, *, active_only: bool = False, kind: RunKind | None = None) -> RunRecord:
        """The newest run (only an unfinished one, only one of this kind, if asked)."""
        conditions: list[str] = []
        values: list[str] = []
        if active_only:
            conditions.append(f"state IN ({','.join('?' * len(RUN_ACTIVE))})")
            values.extend(RUN_ACTIVE)
        if kind is not None:
            conditions.append("kind = ?")
            values.append(kind)
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        row = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} "  # noqa: S608
            "ORDER BY created DESC, id DESC LIMIT 1",
            values,
        ).fetchone()
        if row is None:
            what = " ".join(
                word for word in ("unfinished" if active_only else "", kind or "", "run") if word
            )
            raise JournalError(f"no {what} in {self.path}")
        return _run_record(row)

    def set_run_state(self, run_id: str, state: RunState, reason: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET state = ?, reason = ?, updated = ? WHERE id = ?",
                (state, reason, time.time(), run_id),
            )
            if state in RUN_FINAL:
                db.execute("DELETE FROM leases WHERE run = ?", (run_id,))

    def request_abort(self, run_id: str) -> bool:
        """Ask a run to abort; False if it had already ended."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id!r} in {self.path}")
            if row[0] in RUN_FINAL:
                return False
            db.execute(
                "UPDATE runs SET state = ?, reason = 'abort requested', updated = ? WHERE id = ?",
                (RunState.ABORTING, time.time(), run_id),
            )
        return True

    # --- the run lock -----------------------------------------------------------------------

    def lock_path(self, run_id: str) -> Path:
        return self.path.parent / f"{self.path.name}.locks" / f"{run_id}.lock"

    def lock_run(self, run_id: str) -> RunLock:
        path = self.lock_path(run_id)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunBusy(
                f"run {run_id} is being executed by another process"
                + (f" (pid {holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return RunLock(path, fd)

    def is_alive(self, run_id: str) -> bool:
        """Whether some process holds the run's lock (executes it) right now."""
        try:
            fd = os.open(self.lock_path(run_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # --- hosts ------------------------------------------------------------------------------

    def hosts(self, run_id: str) -> list[HostRecord]:
        rows = self.db.execute(
            "SELECT run, batch, host, position, state, attempt, detail, fingerprint, updated "
            "FROM hosts WHERE run = ? ORDER BY position",
            (run_id,),
        ).fetchall()
        return [_host_record(row) for row in rows]

    def host(self, run_id: str, batch: str, host: str) -> HostRecord:
        row = self.db.execute(
            "SELECT run, batch, host, position, state, attempt, detail, fingerprint, updated "
            "FROM hosts WHERE run = ? AND batch = ? AND host = ?",
            (run_id, batch, host),
        ).fetchone()
        if row is None:
            raise JournalError(f"run {run_id} has no host {host} in batch {batch}")
        return _host_record(row)

    def set_host(
        self,
        run_id: str,
        batch: str,
        host: str,
        state: HostState,
        detail: str | None = None,
        *,
        attempt: int | None = None,
    ) -> None:
        with self.transaction(synced=False) as db:
            db.execute(
                "UPDATE hosts SET state = ?, detail = ?, attempt = COALESCE(?, attempt), "
                "updated = ? WHERE run = ? AND batch = ? AND host = ?",
                (state, detail, attempt, time.time(), run_id, batch, host),
            )

    def claim_host(self, run_id: str, batch: str, host: str) -> HostRecord | None:
        """Mark a host running before touching it; None if it is done or skipped meanwhile.

        A host that failed (or was cleaned up) starts a new attempt: its transitions and checks
        run again, its finished work stays finished. A host interrupted while running keeps
        its attempt and carries on from the step it was at.
        """
        with self.transaction(synced=False) as db:
            row = db.execute(
                "SELECT state, attempt FROM hosts WHERE run = ? AND batch = ? AND host = ?",
                (run_id, batch, host),
            ).fetchone()
            if row is None or row[0] in HOST_FINAL:
                return None
            attempt = row[1] if row[0] == HostState.RUNNING else row[1] + 1
            db.execute(
                "UPDATE hosts SET state = ?, detail = NULL, attempt = ?, updated = ? "
                "WHERE run = ? AND batch = ? AND host = ?",
                (HostState.RUNNING, attempt, time.time(), run_id, batch, host),
            )
        return self.host(run_id, batch, host)

    def skip_host(self, run_id: str, host: str) -> list[str]:
        """Mark a pending or failed host skipped; returns the batches it was skipped in."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT batch, state FROM hosts WHERE run = ? AND host = ?", (run_id, host)
            ).fetchall()
            if not rows:
                raise JournalError(f"run {run_id} has no host {host!r}")
            busy = [batch for batch, state in rows if state == HostState.RUNNING]
            if busy:
                raise InterlockError(
                    f"{host} is in progress in run {run_id} (or was when it was interrupted): "
                    "resume the run to finish or fail it, or abort the run"
                )
            changed = [
                batch for batch, state in rows if state in (HostState.PENDING, HostState.FAILED)
            ]
            db.executemany(
                "UPDATE hosts SET state = ?, detail = 'skipped by the operator', "
                "updated = ? WHERE run = ? AND batch = ? AND host = ?",
                [(HostState.SKIPPED, time.time(), run_id, batch, host) for batch in changed],
            )
        return changed

    def done_before(
        self, host: str, fingerprint: str, exclude_run: str | None = None
    ) -> str | None:
        """The run in which this host last finished exactly this work, if its latest try did."""
        row = self.db.execute(
            "SELECT h.run, h.state FROM hosts h JOIN runs r ON r.id = h.run "
            "WHERE h.host = ? AND h.fingerprint = ? AND h.run IS NOT ? "
            "ORDER BY r.created DESC, r.id DESC LIMIT 1",
            (host, fingerprint, exclude_run),
        ).fetchone()
        if row is None or row[1] != HostState.DONE:
            return None
        return str(row[0])

    # --- steps ------------------------------------------------------------------------------

    def steps(self, run_id: str, batch: str, host: str) -> dict[str, StepRecord]:
        rows = self.db.execute(
            "SELECT run, batch, host, step, attempt, state, started, finished, detail, data "
            "FROM steps WHERE run = ? AND batch = ? AND host = ?",
            (run_id, batch, host),
        ).fetchall()
        return {row[3]: _step_record(row) for row in rows}

    def all_steps(self, run_id: str) -> list[StepRecord]:
        rows = self.db.execute(
            "SELECT run, batch, host, step, attempt, state, started, finished, detail, data "
            "FROM steps WHERE run = ? ORDER BY started",
            (run_id,),
        ).fetchall()
        return [_step_record(row) for row in rows]

    def step_started(
        self, run_id: str, batch: str, host: str, step: str, attempt: int, *, synced: bool = True
    ) -> None:
        """Record that a step is about to act. With `synced=False` the caller must `sync` before
        it acts (so that steps starting together share one fsync)."""
        now = time.time()
        with self.transaction(synced=synced) as db:
            db.execute(
                "INSERT INTO steps (run, batch, host, step, attempt, state, started) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, batch, host, step) DO "
                "UPDATE SET attempt = excluded.attempt, state = excluded.state, started = "
                "excluded.started, finished = NULL, detail = NULL",
                (run_id, batch, host, step, attempt, StepState.STARTED, now),
            )
            self._log(db, run_id, batch, host, step, attempt, StepState.STARTED, now, None)

    def step_finished(
        self,
        run_id: str,
        batch: str,
        host: str,
        step: str,
        attempt: int,
        state: StepState,
        detail: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record a step's outcome: done, failed, skipped (nothing to do) or undone (cleanup)."""
        now = time.time()
        with self.transaction(synced=False) as db:
            db.execute(
                "INSERT INTO steps (run, batch, host, step, attempt, state, started, finished, "
                "detail, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run, batch, host, step) DO UPDATE SET attempt = excluded.attempt, "
                "state = excluded.state, finished = excluded.finished, detail = excluded.detail, "
                "data = COALESCE(excluded.data, steps.data)",
                (
                    run_id,
                    batch,
                    host,
                    step,
                    attempt,
                    state,
                    now,
                    now,
                    detail,
                    None if data is None else json.dumps(data, sort_keys=True),
                ),
            )
            self._log(db, run_id, batch, host, step, attempt, state, now, detail)

    def sync(self, run_id: str) -> None:
        """Put every record committed so far on disk: one synced write (the run's `updated`
        time), which syncs the WAL and with it the unsynced records before it."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET updated = ? WHERE id = ?", (time.time(), run_id))

    def reset_steps(self, run_id: str, batch: str, host: str, steps: Sequence[str]) -> None:
        """Forget the given steps' states, so a new attempt does them again."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM steps WHERE run = ? AND batch = ? AND host = ? AND step = ?",
                [(run_id, batch, host, step) for step in steps],
            )

    def log(self, run_id: str) -> list[LogEntry]:
        rows = self.db.execute(
            "SELECT seq, batch, host, step, attempt, state, at, detail FROM step_log "
            "WHERE run = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [
            LogEntry(seq, batch, host, step, attempt, StepState(state), at, detail)
            for seq, batch, host, step, attempt, state, at, detail in rows
        ]

    @staticmethod
    def _log(
        db: sqlite3.Connection,
        run_id: str,
        batch: str,
        host: str,
        step: str,
        attempt: int,
        state: StepState,
        at: float,
        detail: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO step_log (run, batch, host, step, attempt, state, at, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, batch, host, step, attempt, state, at, detail),
        )


# The journal stores states as their values; these turn rows into records with typed states.


_RUN_COLUMNS = "id, created, updated, state, reason, plan, settings, kind"

# Journals from before runs had a kind: upgrade plans were the ones titled so.
_UPGRADE_TITLE = "Upgrade: "


def _add_run_kinds(db: sqlite3.Connection) -> None:
    """Give an older journal's runs their kind, once (inside the opening transaction, so two
    processes opening the same old journal do it once between them)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "kind" in columns:
        return
    db.execute(f"ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT '{RunKind.ROLLOUT}'")
    upgrades = []
    for run_id, plan_json in db.execute("SELECT id, plan FROM runs").fetchall():
        try:
            title = json.loads(plan_json).get("title", "")
        except (ValueError, AttributeError):
            continue  # an unreadable plan stays a rollout; reading the run reports the plan
        if isinstance(title, str) and title.startswith(_UPGRADE_TITLE):
            upgrades.append((RunKind.UPGRADE, run_id))
    db.executemany("UPDATE runs SET kind = ? WHERE id = ?", upgrades)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        row[0],
        row[1],
        row[2],
        RunState(row[3]),
        row[4],
        row[5],
        json.loads(row[6]),
        RunKind(row[7]),
    )


def _host_record(row: tuple[Any, ...]) -> HostRecord:
    return HostRecord(row[0], row[1], row[2], row[3], HostState(row[4]), *row[5:])


def _step_record(row: tuple[Any, ...]) -> StepRecord:
    data = json.loads(row[9]) if row[9] else {}
    return StepRecord(
        row[0], row[1], row[2], row[3], row[4], StepState(row[5]), row[6], row[7], row[8], data
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
