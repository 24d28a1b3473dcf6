"""Each bad input that once gave a traceback or a silent wrong answer: now exit ≠ 0, one line.

The sweep over every command is `test_cli_hostile.py`; these are the reported cases, each with
the failure it had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_commands import commands
from interlock.cli.main import main
from interlock.errors import FileFormatError
from interlock.fleet.inventory_file import load_inventory

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("interlock"), err
    assert "Traceback" not in err
    return lines[0]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def write_event(ledger: Path, service: str) -> None:
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / f"charm-{service}.deferred").write_text(
        json.dumps(
            {
                "action": "restart",
                "policy_requestor_name": "test",
                "policy_requestor_type": "charm",
                "reason": "Package update",
                "service": service,
                "timestamp": int(time.time()),
            }
        )
    )


# --- a host tree that only root may change, used as someone else ------------------------------


@pytest.fixture
def root_owned_tree() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    # Not under pytest's 0700 temporary directory: the other user must reach it to be refused.
    top = Path(tempfile.mkdtemp(prefix="interlock-hcli-", dir="/tmp"))
    try:
        top.chmod(0o755)
        write_event(top / "var/lib/policy-rc.d", "cron")
        assert main(["--root", str(top), "auto-restarts", "off"]) == 0  # so `on` must write
        yield top
    finally:
        shutil.rmtree(top)


@pytest.mark.root
@pytest.mark.parametrize(
    "argv",
    [["clear", "--all"], ["clear", "cron"], ["auto-restarts", "off"], ["auto-restarts", "on"]],
)
def test_a_user_who_may_not_write_gets_one_line(root_owned_tree: Path, argv: list[str]) -> None:
    result = subprocess.run(
        [
            *NOBODY,
            sys.executable,
            "-m",
            "interlock.cli.main",
            "--root",
            str(root_owned_tree),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert "ermission denied" in line and "as root" in line
    assert (root_owned_tree / "var/lib/policy-rc.d/charm-cron.deferred").exists()
    assert (root_owned_tree / "etc/policy-rc.d/interlock.policy").exists()


# --- files that cannot be written or read ------------------------------------------------------


@pytest.mark.parametrize("target", ["/nonexistent/x.prom", "{tmp}", ""])
def test_status_metrics_to_a_path_that_cannot_be_written(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(
        ["--root", str(tmp_path), "status", "--metrics", target.format(tmp=tmp_path)], capsys
    )
    assert code != 0
    one_error_line(err)


@pytest.mark.parametrize("root", ["/nonexistent", "{tmp}/file", ""])
def test_a_root_that_is_not_a_directory_is_an_error(
    tmp_path: Path, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    code, err = run(["--root", root.format(tmp=tmp_path), "status"], capsys)
    assert code != 0
    line = one_error_line(err)
    assert any(why in line for why in ("not a directory", "no such directory", "empty value"))
    assert "No restarts" not in capsys.readouterr().out


# --- a service manager that fails ----------------------------------------------------------------

# What systemctl (systemd 252) prints and returns where it cannot reach a service manager.
SYSTEMCTL_DOWN = (
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down\n"
)


def test_restart_when_systemctl_show_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # systemctl must never run against this machine: its captured failure stands in for it.
    from interlock.cli import host as host_cli
    from interlock.host.services import systemd

    def failing_systemctl(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["systemctl", "show"], argv  # nothing but show is ever reached
        return subprocess.CompletedProcess(argv, 1, "", SYSTEMCTL_DOWN)

    monkeypatch.setattr(subprocess, "run", failing_systemctl)
    monkeypatch.setattr(host_cli, "detect_manager", systemd.SystemdManager)
    write_event(tmp_path / "var/lib/policy-rc.d", "cron")
    for argv in (["restart", "cron"], ["restart", "--deferred-only"]):
        code, err = run(["--root", str(tmp_path), *argv], capsys)
        assert code != 0
        assert "systemctl show failed" in one_error_line(err)
    assert (tmp_path / "var/lib/policy-rc.d/charm-cron.deferred").exists()


def test_service_errors_are_interlock_errors() -> None:
    from interlock.errors import InterlockError
    from interlock.host.services.base import ServiceError

    assert issubclass(ServiceError, InterlockError)


# --- numbers that make no sense ------------------------------------------------------------------

NUMERIC_OPTIONS = {
    "--timeout", "--window", "--poll", "--list", "--concurrency", "--gate-passes",
    "--action-timeout", "--gate-interval", "--deadline", "--pre-gate-timeout",
    "--hosts", "--controllers", "--lbs", "--api-delay-ms", "--drain-port",
}  # fmt: skip
# Where 0 is a meaningful answer, said in the option's help: do not wait (a drain bound), or
# none of that role (a lab without controllers or load balancers), or no delay.
ZERO_ALLOWED = {("lb", "drain", "--timeout"), ("lb", "enable", "--timeout")} | {
    ("lab", "up", option) for option in ("--controllers", "--lbs", "--api-delay-ms")
}


def numeric_cases() -> list[tuple[tuple[str, ...], str, str]]:
    cases: list[tuple[tuple[str, ...], str, str]] = []
    for command in commands():
        for action in command.arguments():
            for option in set(action.option_strings) & NUMERIC_OPTIONS:
                values = ["-5", "nan", "inf", "1e999"]
                if (*command.path, option) not in ZERO_ALLOWED:
                    values.append("0")
                cases.extend((command.path, option, value) for value in values)
    return cases


@pytest.mark.parametrize(("path", "option", "value"), numeric_cases(), ids=str)
def test_numbers_must_make_sense(
    path: tuple[str, ...],
    option: str,
    value: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing else is wrong: the inventory and the root exist; the number alone is refused.
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  h1: {address: 127.0.0.1, port: 1}\n")
    extra = {
        "restart": ["cron"],
        "plan": ["--restart", "cron"],
        "drain": ["api/web1", "--socket", "/nonexistent.sock"],
        "enable": ["api/web1", "--socket", "/nonexistent.sock"],
        "facts": ["openstack"],
    }.get(path[-1], [])
    with_inventory = (
        ["-i", str(inventory)] if path[0] in ("fleet", "upgrade") or path[-1] == "plan" else []
    )
    argv = ["--root", str(tmp_path), *path, *extra, *with_inventory, f"{option}={value}"]
    code, err = run(argv, capsys)
    assert code == 2, err
    line = one_error_line(err)
    assert option in line or path[0] == "lab", line  # the lab says "the API delay", "hosts"


def test_the_numeric_sweep_covers_the_reported_options() -> None:
    covered = {(path, option) for path, option, _ in numeric_cases()}
    assert (("restart",), "--timeout") in covered
    assert (("fleet", "status"), "--timeout") in covered
    assert (("rollout", "plan"), "--action-timeout") in covered


# --- host ranges that would fill the memory ------------------------------------------------------


# Run in a child with its address space capped: should the cap regress, the child fails with
# a MemoryError instead of taking this machine's memory (3.2 GB and more).
LOAD_CAPPED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from interlock.errors import FileFormatError
from interlock.fleet.inventory_file import load_inventory
try:
    load_inventory(sys.argv[1])
except FileFormatError as exc:
    print(json.dumps({"path": exc.path, "line": exc.line, "message": str(exc)}))
"""


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[web]\nweb[0:99999999]\n", 2),
        ("[web]\nweb[0:9999][0:9999]\n", 2),
        ("[a]\nweb[0:6000]\n[b]\ndb[0:6000]\n", 4),
        ("[web]\nweb[0:" + "9" * 5000 + "]\n", 2),
    ],
    ids=["one-huge-range", "nested", "total", "huge-number"],
)
def test_host_ranges_are_capped(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    child = subprocess.run(
        [sys.executable, "-c", LOAD_CAPPED, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0 and child.stdout, child.stderr[-2000:]
    error = json.loads(child.stdout)
    assert (error["path"], error["line"]) == (str(path), line)
    assert "10000" in error["message"] or "at most 9 digits" in error["message"]
    assert len(error["message"]) < 400  # the 5000-digit number is not repeated in full


def test_yaml_host_ranges_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    web[0:99999999]:\n")
    with pytest.raises(FileFormatError) as caught:
        load_inventory(path)
    assert caught.value.line == 3


def test_a_range_within_the_cap_still_expands(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb[0001:9999]\n")
    assert len(load_inventory(path).hosts) == 9999


def test_an_inventory_that_is_no_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)
    child = subprocess.run(
        [sys.executable, "-c", LOAD_CAPPED, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,  # reading the FIFO would block here for ever
        check=False,
    )
    assert json.loads(child.stdout)["message"] == f"{fifo}: not a regular file"
