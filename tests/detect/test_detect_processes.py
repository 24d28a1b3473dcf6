"""Outdated processes on this machine: real programs whose files are replaced under them.

Each test starts its own processes from copies in its temporary directory, changes the copies
the way dpkg does (a new file renamed over the old one), and kills its processes by pid after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.detect.findings import find_outdated_processes
from interlock.detect.mapping import ServiceMapper
from interlock.detect.stale import scan_processes
from interlock.detect.system import System
from interlock.host.paths import HostPaths
from interlock.lab.sandbox import CLI

SLEEP = shutil.which("sleep") or "/usr/bin/sleep"


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.kill()
        for process in self.started:
            process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    running = Processes()
    try:
        yield running
    finally:
        running.stop()


def replace_like_dpkg(path: Path, data: bytes) -> None:
    """Unpack a new version beside the old one and rename it over, as dpkg does."""
    new = path.with_name(path.name + ".dpkg-new")
    new.write_bytes(data)
    new.chmod(0o755)
    os.replace(new, path)


def wait_for_exec(pid: int, program: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") == str(program):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{pid} never ran {program}")


def test_replaced_and_deleted_executables(tmp_path: Path, processes: Processes) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    replaced, deleted, untouched = (bin_dir / name for name in ("replaced", "deleted", "same"))
    for program in (replaced, deleted, untouched):
        shutil.copy2(SLEEP, program)
    running = {
        program: processes.start([str(program), "300"]).pid
        for program in (replaced, deleted, untouched)
    }
    for program, pid in running.items():
        wait_for_exec(pid, program)

    replace_like_dpkg(replaced, Path(SLEEP).read_bytes())
    deleted.unlink()
    scan = scan_processes()
    assert [(f.path, f.why) for f in scan.stale[running[replaced]]] == [(str(replaced), "replaced")]
    assert [(f.path, f.why) for f in scan.stale[running[deleted]]] == [(str(deleted), "deleted")]
    assert running[untouched] not in scan.stale
    assert scan.scanned > 3

    listed = subprocess.run(
        [*CLI, "detect", "--json", "--no-watch"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 1, listed.stderr
    findings = {f["pid"]: f for f in json.loads(listed.stdout)["processes"]["findings"]}
    assert findings[running[replaced]]["reason"] == f"Outdated file(s) in use: {replaced}"
    assert findings[running[replaced]]["service"] is None  # no service runs it: not recordable


def test_a_worker_maps_to_its_sysv_service_through_the_pidfile(
    tmp_path: Path, processes: Processes
) -> None:
    """The init script's pidfile names the main process; its children belong to the service."""
    (tmp_path / "bin").mkdir()
    worker = tmp_path / "bin" / "svc-worker"
    shutil.copy2(SLEEP, worker)
    main = tmp_path / "bin" / "svc-main"
    main.write_text(f"import subprocess, sys\nsubprocess.run([{str(worker)!r}, '300'])\n")
    pidfile = tmp_path / "svc.pid"
    init_dir = tmp_path / "init.d"
    init_dir.mkdir()
    script = init_dir / "svc"
    script.write_text(f"#!/bin/sh\nPIDFILE={pidfile}\nDAEMON={main}\n")
    script.chmod(0o755)
    parent = processes.start(["/usr/bin/python3", str(main)])
    pidfile.write_text(f"{parent.pid}\n")
    child = None
    try:
        deadline = time.monotonic() + 10
        while child is None and time.monotonic() < deadline:
            children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
            child = int(children[0]) if children else None
            time.sleep(0.01)
        assert child is not None
        wait_for_exec(child, worker)

        mapper = ServiceMapper("/proc", str(init_dir), systemd=False)
        assert mapper.service_of(parent.pid) == "svc"  # the interpreter runs DAEMON as its script
        assert mapper.service_of(child) == "svc"
        assert mapper.service_of(os.getpid()) is None

        replace_like_dpkg(worker, Path(SLEEP).read_bytes())
        system = System(HostPaths.under(tmp_path / "root"), init_dir=str(init_dir))
        report = find_outdated_processes(system, python=False)
        (finding,) = [f for f in report.findings if f.pid == child]
        assert (finding.service, finding.kind) == ("svc", "outdated-files")
    finally:
        if child is not None:
            os.kill(child, signal.SIGKILL)  # the worker is not our child: kill it by its pid


@pytest.mark.slow
def test_a_python_program_whose_module_changed_after_it_started(
    tmp_path: Path, processes: Processes
) -> None:
    """Its imports are read from its sources; the module file changed after the start."""
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "lib" / "__init__.py").write_text("from .helper import VALUE\n")
    (app / "lib" / "helper.py").write_text("VALUE = 1\n")
    (app / "unused.py").write_text("VALUE = 1\n")
    (app / "main.py").write_text("import time\nimport lib\ntime.sleep(300)\n")
    program = processes.start(["/usr/bin/python3", "-u", str(app / "main.py")])
    wait_for_exec(program.pid, Path(os.path.realpath("/usr/bin/python3")))
    system = System(HostPaths.under(tmp_path / "root"))
    assert program.pid not in {f.pid for f in find_outdated_processes(system).findings}

    time.sleep(2.2)  # beyond the start-time tolerance: /proc start times are whole-second based
    (app / "lib" / "helper.py").write_text("VALUE = 2\n")
    (app / "unused.py").write_text("VALUE = 2\n")  # not imported: does not count
    (finding,) = [f for f in find_outdated_processes(system).findings if f.pid == program.pid]
    assert finding.kind == "python"
    assert finding.files == (str(app / "lib" / "helper.py"),)
    assert finding.reason == f"Python file(s) changed since start: {app / 'lib' / 'helper.py'}"
