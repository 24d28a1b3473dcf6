"""The journal: durable settings, leases that keep two runs apart, the run lock, host attempts."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from interlock.rollout.journal import (
    HostsLeased,
    Journal,
    JournalError,
    RunBusy,
    default_journal_path,
)
from interlock.rollout.runs import pick_run, start_run
from interlock.rollout.states import HostState, RunKind, RunState, StepState
from rollout.rollout_fakes import fleet, make_plan


def test_durable_settings_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    with Journal(path) as journal:
        assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_default_location_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_journal_path() == tmp_path / "interlock" / "journal.sqlite"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_journal_path() == tmp_path / "home/.local/state/interlock/journal.sqlite"


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_text("not a database at all, just text " * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        Journal(path)


def test_the_plan_is_stored_and_read_back(tmp_path: Path) -> None:
    plan = make_plan(fleet(3))
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(plan, {"transport": "local"})
        assert journal.run(run.id).plan == plan
        assert run.settings == {"transport": "local"}
        assert [h.state for h in journal.hosts(run.id)] == ["pending"] * 3


def test_states_are_stored_as_their_words_and_read_back_typed(tmp_path: Path) -> None:
    """Journals written before the state types existed hold the same words: both ways work."""
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(make_plan(fleet(2)), {})
        journal.set_host(run.id, "b1", "h0", HostState.FAILED, "boom")
        journal.step_finished(run.id, "b1", "h0", "work", 1, StepState.DONE)
        stored = journal.db.execute(
            "SELECT typeof(state), state FROM hosts WHERE run = ? ORDER BY position", (run.id,)
        ).fetchall()
        assert stored == [("text", "failed"), ("text", "pending")]
        assert journal.db.execute("SELECT state FROM runs").fetchall() == [("running",)]
        # A row as an older interlock wrote it, a plain string, reads back as the state.
        journal.db.execute("UPDATE hosts SET state = 'done' WHERE host = 'h1'")
        hosts = journal.hosts(run.id)
        assert [type(h.state) for h in hosts] == [HostState, HostState]
        assert [h.state for h in hosts] == [HostState.FAILED, HostState.DONE]
        assert type(journal.run(run.id).state) is RunState
        assert journal.steps(run.id, "b1", "h0")["work"].state is StepState.DONE
        assert [entry.state for entry in journal.log(run.id)] == [StepState.DONE]


def test_overlapping_runs_are_refused_until_the_first_ends(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        first = journal.create_run(make_plan(fleet(3)), {})
        with pytest.raises(HostsLeased) as refused:
            journal.create_run(make_plan(fleet(5)[2:]), {})
        message = str(refused.value)
        assert f"run {first.id} (running, not executing) holds h2" in message
        assert "rollout resume" in message and "rollout abort" in message
        # Hosts no other run holds are fine.
        other = make_plan([h for h in fleet(5) if h.name in ("h3", "h4")])
        journal.create_run(other, {})
        # Once the first run ends, its hosts are free.
        journal.set_run_state(first.id, RunState.COMPLETE)
        journal.create_run(make_plan(fleet(3)), {})


def test_a_run_being_executed_is_reported_as_such_and_cannot_be_locked_twice(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(make_plan(fleet(2)), {})
        assert not journal.is_alive(run.id)
        lock = journal.lock_run(run.id)
        try:
            assert journal.is_alive(run.id)
            with pytest.raises(RunBusy, match=f"pid {os.getpid()}"):
                journal.lock_run(run.id)
            with pytest.raises(HostsLeased, match=f"run {run.id} is executing on h0, h1"):
                journal.create_run(make_plan(fleet(2)), {})
        finally:
            lock.release()
        assert not journal.is_alive(run.id)


def test_the_run_lock_dies_with_its_process(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(make_plan(fleet(1)), {})
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from interlock.rollout.journal import Journal; "
                "j = Journal(sys.argv[1]); j.lock_run(sys.argv[2]); print('locked', flush=True); "
                "time.sleep(60)",
                str(journal.path),
                run.id,
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            assert journal.is_alive(run.id)
            holder.kill()
            holder.wait()
            assert not journal.is_alive(run.id)
            journal.lock_run(run.id).release()
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()


def test_claims_count_attempts_and_respect_skips(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(make_plan(fleet(2)), {})
        first = journal.claim_host(run.id, "b1", "h0")
        assert first is not None and first.attempt == 1
        # Interrupted while running: the same attempt carries on.
        again = journal.claim_host(run.id, "b1", "h0")
        assert again is not None and again.attempt == 1
        journal.set_host(run.id, "b1", "h0", HostState.FAILED, "boom")
        retry = journal.claim_host(run.id, "b1", "h0")
        assert retry is not None and retry.attempt == 2
        journal.set_host(run.id, "b1", "h0", HostState.FAILED, "boom")
        assert journal.skip_host(run.id, "h0") == ["b1"]
        assert journal.claim_host(run.id, "b1", "h0") is None
        journal.claim_host(run.id, "b1", "h1")
        with pytest.raises(Exception, match="in progress"):
            journal.skip_host(run.id, "h1")


def test_steps_and_their_log(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(make_plan(fleet(1)), {})
        journal.step_started(run.id, "b1", "h0", "work", 1)
        journal.step_finished(run.id, "b1", "h0", "work", 1, StepState.DONE, "ok", {"pid": 12})
        step = journal.steps(run.id, "b1", "h0")["work"]
        assert (step.state, step.detail, step.data) == ("done", "ok", {"pid": 12})
        assert step.duration is not None and step.duration >= 0
        assert [(e.step, e.state) for e in journal.log(run.id)] == [
            ("work", "started"),
            ("work", "done"),
        ]


def test_done_before_finds_the_same_work_finished_last_time(tmp_path: Path) -> None:
    plan = make_plan(fleet(2))
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(plan, {})
        fingerprint = plan.hosts[0].fingerprint
        assert journal.done_before("h0", fingerprint) is None
        journal.set_host(run.id, "b1", "h0", HostState.DONE)
        journal.set_run_state(run.id, RunState.COMPLETE)
        assert journal.done_before("h0", fingerprint) == run.id
        assert journal.done_before("h0", "another-fingerprint") is None
        # A later run with the same work that did not finish it is what counts.
        later = journal.create_run(plan, {})
        assert journal.done_before("h0", fingerprint, exclude_run=later.id) == run.id
        assert journal.done_before("h0", fingerprint) is None


def test_a_host_in_two_batches_carries_over_only_the_work_it_finished(tmp_path: Path) -> None:
    """An upgrade puts a host in one batch per project: finishing one is not finishing all."""
    first, second = make_plan(fleet(1), work=("one",)), make_plan(fleet(1), work=("two",))
    batches = (first.batches[0], replace(second.batches[0], id="b2"))
    plan = replace(first, batches=batches)
    assert plan.hosts[0].fingerprint != plan.hosts[1].fingerprint
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(plan, {})
        journal.set_host(run.id, "b1", "h0", HostState.DONE)
        journal.set_host(run.id, "b2", "h0", HostState.FAILED)
        journal.set_run_state(run.id, RunState.ABORTED)
        again = start_run(journal, plan, {})
        states = {(h.batch, h.host): h.state for h in journal.hosts(again.id)}
        assert states == {("b1", "h0"): "done", ("b2", "h0"): "pending"}


def test_the_latest_run_of_a_kind_is_a_query_on_the_stored_kind(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        # The kind is what the run was started as, whatever its plan is titled.
        upgrade = start_run(journal, make_plan(fleet(2)), {}, kind=RunKind.UPGRADE)
        rollout = start_run(journal, make_plan(fleet(4)[2:]), {}, kind=RunKind.ROLLOUT)
        assert journal.run(upgrade.id).kind is RunKind.UPGRADE
        assert journal.latest_run(active_only=True).id == rollout.id
        assert journal.latest_run(active_only=True, kind=RunKind.UPGRADE).id == upgrade.id
        assert pick_run(journal, None, active=True, kind=RunKind.ROLLOUT).id == rollout.id
        journal.set_run_state(upgrade.id, RunState.COMPLETE)
        with pytest.raises(JournalError, match="no unfinished upgrade run in"):
            pick_run(journal, None, active=True, kind=RunKind.UPGRADE)
        assert journal.latest_run(kind=RunKind.UPGRADE).id == upgrade.id
        stored = journal.db.execute("SELECT kind FROM runs ORDER BY created, id").fetchall()
        assert sorted(stored) == [("rollout",), ("upgrade",)]


def test_an_older_journal_gets_its_runs_kinds_from_their_titles_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    upgrade_plan = replace(make_plan(fleet(2)), title="Upgrade: OpenStack 2024.1")
    rollout_plan = make_plan(fleet(2))
    # The runs table as it was before runs had a kind, with a run of each.
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
            state TEXT NOT NULL, reason TEXT, plan TEXT NOT NULL, settings TEXT NOT NULL);
        """
    )
    old.executemany(
        "INSERT INTO runs VALUES (?, ?, ?, 'paused', NULL, ?, '{}')",
        [("r-up", 1.0, 1.0, upgrade_plan.to_json()), ("r-roll", 2.0, 2.0, rollout_plan.to_json())],
    )
    old.commit()
    old.close()
    with Journal(path) as journal:
        assert journal.run("r-up").kind is RunKind.UPGRADE
        assert journal.run("r-roll").kind is RunKind.ROLLOUT
        assert journal.latest_run(active_only=True, kind=RunKind.UPGRADE).id == "r-up"
        # Once: from now on the stored kind counts, not the title.
        journal.db.execute("UPDATE runs SET kind = 'rollout' WHERE id = 'r-up'")
    with Journal(path) as journal:
        assert journal.run("r-up").kind is RunKind.ROLLOUT
        assert journal.run("r-up").plan == upgrade_plan
