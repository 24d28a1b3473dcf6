"""`interlock lab` commands that need no running lab: help, refusals, an empty directory."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.cli import lab as lab_cli
from interlock.lab.errors import LabError


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="interlock")
    lab_cli.register(top.add_subparsers(dest="command", required=True))
    return top


def test_up_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["lab", "up", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "interlock lab up --hosts 50 --controllers 3 --lbs 2" in text
    assert "--pid-namespace" in text and "--subnet CIDR" in text


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_refuses_to_run_without_root(tmp_path: Path) -> None:
    script = (
        "import argparse, sys\n"
        "from interlock.cli import lab\n"
        "p = argparse.ArgumentParser(); lab.register(p.add_subparsers(dest='c'))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "try:\n    a.handler(a)\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    for action in (["up"], ["down"], ["status"]):
        result = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
             sys.executable, "-c", script, "lab", *action, "--dir", str(tmp_path)],
            capture_output=True, text=True, timeout=30, check=False, cwd="/",
        )  # fmt: skip
        assert result.stdout.startswith("LabError the lab needs root"), result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_status_and_down_of_an_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = parser().parse_args(["lab", "status", "--dir", str(tmp_path), "--name", "tnone"])
    with pytest.raises(LabError, match="no lab in"):
        status.handler(status)

    down = parser().parse_args(["lab", "down", "--dir", str(tmp_path), "--name", "tnone"])
    assert down.handler(down) == 0
    assert "no lab in" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
