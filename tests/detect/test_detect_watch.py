"""Watched configuration files: the restart map, the stored hashes, events and real restarts.

The restarts are real: sysv services (start-stop-daemon running `sleep`) whose init scripts live
in a test directory bound over /etc/init.d inside a private namespace, restarted and verified by
`interlock detect --record` through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detect.detect_sandbox import Sandbox
from interlock.detect.system import System
from interlock.detect.watch import (
    WatchEntry,
    WatchState,
    check,
    compare,
    expand,
    parse_restart_map,
)
from interlock.errors import FileFormatError
from interlock.lab.sandbox import NamespaceSession


def watch_system(sandbox: Sandbox) -> System:
    return System.live(sandbox.root)


def write_map(sandbox: Sandbox, name: str, text: str) -> Path:
    directory = watch_system(sandbox).watch_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_parse_a_restart_map_in_any_yaml_style() -> None:
    entries = parse_restart_map(
        "# neutron\n"
        "/etc/neutron/neutron.conf: [neutron-server, neutron-dhcp-agent.service]\n"
        "/etc/neutron/plugins/ml2/*.ini:\n"
        "  - neutron-server\n",
        "/w/neutron.yaml",
    )
    assert entries == [
        WatchEntry(
            "/etc/neutron/neutron.conf",
            ("neutron-server", "neutron-dhcp-agent"),
            "/w/neutron.yaml",
            2,
        ),
        WatchEntry("/etc/neutron/plugins/ml2/*.ini", ("neutron-server",), "/w/neutron.yaml", 3),
    ]
    assert parse_restart_map("", "/w/empty.yaml") == []


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("/etc/a.conf: [a]\n/etc/b.conf: [b\n", 3, "invalid YAML"),
        ("- /etc/a.conf\n", 1, "maps file paths"),
        ("/etc/a.conf: a\n", 1, "must be a list, not a string"),
        ("/etc/a.conf: {a: b}\n", 1, "must be a list, not a mapping"),
        ("etc/a.conf: [a]\n", 1, "not an absolute path"),
        ("/etc/a.conf: [a]\n/etc/b.conf: ['bad name']\n", 2, "not a valid service name"),
        ("/etc/a.conf: []\n", 1, "no services"),
    ],
)
def test_restart_map_errors_name_the_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        parse_restart_map(text, "/etc/interlock/watch.d/x.yaml")
    assert caught.value.path == "/etc/interlock/watch.d/x.yaml"
    assert caught.value.line == line
    assert words in caught.value.message


def test_compare_created_changed_deleted_and_baseline() -> None:
    entries = [
        WatchEntry("/c/*.ini", ("a", "b"), "m.yaml", 1),
        WatchEntry("/c/app.conf", ("a",), "m.yaml", 2),
        WatchEntry("/c/new.conf", ("c",), "m.yaml", 3),
    ]
    previous = {"/c/*.ini": {"/c/x.ini": "1", "/c/y.ini": "2"}, "/c/app.conf": {"/c/app.conf": "3"}}
    current = {
        "/c/*.ini": {"/c/y.ini": "2", "/c/z.ini": "4"},
        "/c/app.conf": {"/c/app.conf": "5"},
        "/c/new.conf": {"/c/new.conf": "6"},
    }
    changes, baseline = compare(entries, current, previous)
    assert [(c.path, c.change, c.services) for c in changes] == [
        ("/c/app.conf", "changed", ("a",)),
        ("/c/x.ini", "deleted", ("a", "b")),
        ("/c/z.ini", "created", ("a", "b")),
    ]
    assert baseline == ["/c/new.conf"]


def test_a_glob_matching_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "a.conf").write_text("x")
    entry = WatchEntry(f"{tmp_path}/*", ("svc",), "/etc/interlock/watch.d/m.yaml", 7)
    with pytest.raises(FileFormatError) as caught:
        expand(entry)
    assert caught.value.line == 7
    assert f"matches a directory, not a file: {tmp_path}/conf.d" in str(caught.value)
    literal = WatchEntry(str(tmp_path / "conf.d"), ("svc",), "/etc/interlock/watch.d/m.yaml", 8)
    with pytest.raises(FileFormatError, match=r"\(watch files: .*conf\.d/\*\)"):
        expand(literal)


def test_listing_changes_records_nothing_and_keeps_the_hashes(sandbox: Sandbox) -> None:
    conf = sandbox.root.parent / "conf"
    conf.mkdir()
    (conf / "app.conf").write_text("a = 1\n")
    write_map(sandbox, "app.yaml", f"{conf}/app.conf: [app]\n")
    system = watch_system(sandbox)
    sandbox.auto_restarts(False)
    first = check(system, apply=True)
    assert first.scan.baseline == [f"{conf}/app.conf"] and not first.scan.changes
    (conf / "app.conf").write_text("a = 2\n")
    for _ in range(2):  # listing twice finds the same change: nothing was stored
        listed = check(system, apply=False)
        assert [(c.path, c.change) for c in listed.scan.changes] == [
            (f"{conf}/app.conf", "changed")
        ]
    assert sandbox.events() == []
    recorded = check(system, apply=True)
    assert [(a.service, a.action) for a in recorded.actions] == [("app", "recorded")]
    assert sandbox.reasons() == {"app": [f"File(s) changed: {conf}/app.conf"]}
    assert check(system, apply=True).scan.changes == []


def test_broken_maps_and_directory_globs_do_not_hide_the_good_entries(
    sandbox: Sandbox,
) -> None:
    conf = sandbox.root.parent / "conf"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "good.conf").write_text("1")
    write_map(sandbox, "bad.yaml", "/etc/x.conf: [a\n")
    write_map(sandbox, "dirs.yaml", f"# all of it\n{conf}/*: [svc]\n")
    write_map(sandbox, "good.yaml", f"{conf}/good.conf: [good]\n")
    system = watch_system(sandbox)
    sandbox.auto_restarts(False)
    check(system, apply=True)
    (conf / "good.conf").write_text("2")
    report = check(system, apply=True)
    problems = sorted(str(p) for p in report.scan.problems)
    assert len(problems) == 2
    assert problems[0].startswith(f"{system.watch_dir}/bad.yaml line 2: invalid YAML")
    assert problems[1].startswith(f"{system.watch_dir}/dirs.yaml line 2: {conf}/* matches")
    assert sandbox.reasons() == {"good": [f"File(s) changed: {conf}/good.conf"]}
    cli = subprocess.run(
        sandbox.cli("detect", "--no-processes"), capture_output=True, text=True, check=False
    )
    assert cli.returncode == 3, cli.stderr
    assert "bad.yaml line 2" in cli.stderr and "matches a directory" in cli.stderr


def test_an_unreadable_state_file_starts_a_new_baseline(sandbox: Sandbox) -> None:
    state = WatchState(sandbox.paths.state_dir)
    state.path.parent.mkdir(parents=True, exist_ok=True)
    for text in ("{not json", "[1, 2]", '{"format": 1, "patterns": {"/a": 3}}'):
        state.path.write_text(text)
        patterns, problem = state.load()
        assert patterns == {} and problem is not None and str(state.path) in str(problem)


SLEEP_SERVICE = """\
#!/bin/sh
DAEMON=/usr/bin/sleep
PIDFILE=/run/{name}.pid
case "$1" in
  start)
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE \\
      --exec $DAEMON -- 100000
    ;;
  stop)
    start-stop-daemon --stop --quiet --oknodo --retry TERM/5/KILL/5 --pidfile $PIDFILE \\
      --remove-pidfile
    ;;
  restart)
    {restart}
    ;;
esac
"""
WORKS = '"$0" stop && "$0" start'
FAILS = "echo 'refusing: configuration does not parse' >&2; exit 1"


@pytest.fixture
def services_ns(
    namespaces_available: None, sandbox: Sandbox, tmp_path: Path
) -> Iterator[NamespaceSession]:
    """A namespace whose /etc/init.d holds three sleep services: watch-0 cannot restart."""
    init_dir = tmp_path / "init.d"
    init_dir.mkdir()
    for name, restart in (("watch-0", FAILS), ("watch-a", WORKS), ("watch-b", WORKS)):
        script = init_dir / name
        script.write_text(SLEEP_SERVICE.format(name=name, restart=restart))
        script.chmod(0o755)
    ns = NamespaceSession(tmp_path / "ns", sandbox.gate_script, {init_dir: "/etc/init.d"})
    ns.start()
    try:
        for name in ("watch-0", "watch-a", "watch-b"):
            ns.run([f"/etc/init.d/{name}", "start"])
        yield ns
    finally:
        ns.close()


def detect_json(ns: NamespaceSession, sandbox: Sandbox, *args: str) -> Any:
    """The `watch` part of `interlock detect --json`."""
    result = ns.run(sandbox.cli("detect", "--json", "--no-processes", *args), check=False)
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout.strip(), f"no JSON (exit {result.returncode}): {result.stderr}"
    return json.loads(result.stdout)["watch"]


@pytest.mark.root
def test_changes_become_events_then_verified_restarts(
    services_ns: NamespaceSession, sandbox: Sandbox
) -> None:
    ns = services_ns
    conf = sandbox.root.parent / "conf"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "app.conf").write_text("debug = false\n")
    (conf / "conf.d" / "a.ini").write_text("[a]\n")
    (conf / "conf.d" / "b.ini").write_text("[b]\n")
    write_map(
        sandbox,
        "app.yaml",
        f"{conf}/app.conf: [watch-a]\n{conf}/conf.d/*.ini: [watch-a, watch-b]\n",
    )
    pids = {name: ns.pid_of(f"/run/{name}.pid") for name in ("watch-a", "watch-b")}
    assert all(pids.values())

    baseline = detect_json(ns, sandbox, "--record")
    assert baseline["baseline"] == [f"{conf}/app.conf", f"{conf}/conf.d/*.ini"]
    assert baseline["changes"] == []

    # Auto restarts off: a changed, a created and a deleted file → one event per service.
    sandbox.auto_restarts(False)
    (conf / "app.conf").write_text("debug = true\n")
    (conf / "conf.d" / "c.ini").write_text("[c]\n")
    (conf / "conf.d" / "a.ini").unlink()
    listed = detect_json(ns, sandbox)
    assert [(c["path"], c["change"]) for c in listed["changes"]] == [
        (f"{conf}/app.conf", "changed"),
        (f"{conf}/conf.d/a.ini", "deleted"),
        (f"{conf}/conf.d/c.ini", "created"),
    ]
    assert sandbox.events() == []
    recorded = detect_json(ns, sandbox, "--record")
    assert [(a["service"], a["action"]) for a in recorded["actions"]] == [
        ("watch-a", "recorded"),
        ("watch-b", "recorded"),
    ]
    assert sandbox.reasons() == {
        "watch-a": [f"File(s) changed: {conf}/app.conf, {conf}/conf.d/a.ini, {conf}/conf.d/c.ini"],
        "watch-b": [f"File(s) changed: {conf}/conf.d/a.ini, {conf}/conf.d/c.ini"],
    }
    assert {name: ns.pid_of(f"/run/{name}.pid") for name in pids} == pids  # nothing restarted
    again = detect_json(ns, sandbox, "--record")
    assert again["changes"] == [] and len(sandbox.events()) == 2  # recorded once

    # Auto restarts on: the services restart one at a time, verified; what they owed clears.
    sandbox.auto_restarts(True)
    (conf / "conf.d" / "b.ini").write_text("[b]\nx = 1\n")
    restarted = detect_json(ns, sandbox, "--record")
    assert [(a["service"], a["action"]) for a in restarted["actions"]] == [
        ("watch-a", "restarted"),
        ("watch-b", "restarted"),
    ]
    new_pids = {name: ns.pid_of(f"/run/{name}.pid") for name in pids}
    assert all(new_pids.values()) and all(new_pids[n] != pids[n] for n in pids)
    assert sandbox.events() == []
    assert detect_json(ns, sandbox, "--record")["changes"] == []


@pytest.mark.root
def test_a_failed_restart_stops_the_rest_and_records_them(
    services_ns: NamespaceSession, sandbox: Sandbox
) -> None:
    ns = services_ns
    shared = sandbox.root.parent / "shared.conf"
    shared.write_text("v1\n")
    write_map(sandbox, "shared.yaml", f"{shared}: [watch-0, watch-a]\n")
    detect_json(ns, sandbox, "--record")
    before = ns.pid_of("/run/watch-a.pid")
    shared.write_text("v2\n")
    report = detect_json(ns, sandbox, "--record")
    actions = [(a["service"], a["action"]) for a in report["actions"]]
    assert actions == [("watch-0", "failed"), ("watch-a", "not attempted")]
    assert "refusing: configuration does not parse" in str(report["actions"])
    assert ns.pid_of("/run/watch-a.pid") == before
    assert sandbox.reasons() == {
        "watch-0": [f"File(s) changed: {shared}"],
        "watch-a": [f"File(s) changed: {shared}"],
    }
    assert detect_json(ns, sandbox, "--record")["changes"] == []  # the change is owed, not lost
