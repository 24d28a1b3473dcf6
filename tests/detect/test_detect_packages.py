"""End to end with real packages: apt upgrades them under running daemons, detection records it.

The packages (ilt_packages.py) are built here with gcc and dpkg-deb and installed from a local
repository with apt-get, inside a private namespace where the gate is /usr/sbin/policy-rc.d,
apt.conf.d holds the machine's files plus interlock's hooks, and /run is private. Their files go
to the machine's /usr and /etc for the duration of the test and are purged afterwards, even on
failure; their daemons die with the namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detect.detect_sandbox import Sandbox, make_sandbox
from detect.ilt_packages import LIB_DIR, PACKAGES, apt_get, apt_options, build_repository
from interlock.detect.apt_hooks import HookFiles, install_hooks
from interlock.detect.system import System
from interlock.lab.sandbox import CLEAN_ENV, NamespaceSession

pytestmark = [pytest.mark.root, pytest.mark.slow]

DAEMONS = ("ilt-cdaemon", "ilt-pydaemon", "ilt-pyworker")
DENIED = "invoke-rc.d: policy-rc.d denied execution of restart."
LEFTOVERS = (
    LIB_DIR,
    "/usr/lib/python3/dist-packages/iltpy",
    "/usr/lib/python3/dist-packages/iltdep",
    "/usr/sbin/ilt-cdaemon",
    "/usr/sbin/ilt-pydaemon",
    "/etc/init.d/ilt-cdaemon",
    "/etc/init.d/ilt-pydaemon",
    "/etc/init.d/ilt-pyworker",
)


def installed_test_packages() -> list[str]:
    """Test packages dpkg knows in any state but gone (a crashed run may have left them)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", r"${binary:Package} ${db:Status-Abbrev}\n", *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    return [
        line.split()[0]
        for line in result.stdout.splitlines()
        if len(line.split()) > 1 and line.split()[1][1] != "n"
    ]


def purge_outside(options: list[str]) -> None:
    leftover = installed_test_packages()
    if leftover:
        subprocess.run(
            apt_get(options, "purge", *leftover),
            capture_output=True,
            check=True,
            env=CLEAN_ENV,
            timeout=600,
        )


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("gcc", "dpkg-deb", "dpkg-scanpackages", "apt-get", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    return build_repository(tmp_path_factory.mktemp("ilt-build"))


class Host:
    """The namespace, the sandbox (gate, policies, ledger) and apt options, as one host."""

    def __init__(self, ns: NamespaceSession, sandbox: Sandbox, apt: list[str]) -> None:
        self.ns = ns
        self.sandbox = sandbox
        self.apt = apt

    def apt_get(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ns.run(apt_get(self.apt, *args), timeout=600)

    def interlock(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ns.run(self.sandbox.cli(*args), check=check)

    def detect(self, *args: str) -> Any:
        result = self.interlock("detect", "--json", "--no-watch", *args, check=False)
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)

    def pids(self) -> dict[str, int | None]:
        return {name: self.ns.pid_of(f"/run/{name}.pid") for name in DAEMONS}

    def hook_log(self) -> str:
        path = System.live(self.sandbox.root).log_file
        return path.read_text() if path.exists() else ""


@pytest.fixture
def host(namespaces_available: None, repository: Path, tmp_path: Path) -> Iterator[Host]:
    apt = apt_options(repository, tmp_path / "apt")
    purge_outside(apt)  # a crashed earlier run must not decide this one
    sandbox = make_sandbox(tmp_path / "sandbox")
    apt_conf = tmp_path / "apt.conf.d"
    shutil.copytree("/etc/apt/apt.conf.d", apt_conf)
    hooks = HookFiles(
        apt_conf / "50interlock", tmp_path / "apt-hook", str(tmp_path / "apt-hook"), tmp_path
    )
    install_hooks(hooks, System.live(sandbox.root), root=str(sandbox.root))
    ns = NamespaceSession(tmp_path / "ns", sandbox.gate_script, {apt_conf: "/etc/apt/apt.conf.d"})
    ns.start()
    try:
        yield Host(ns, sandbox, apt)
    finally:
        try:
            sandbox.auto_restarts(True)
            leftover = installed_test_packages()
            if leftover:
                ns.run(apt_get(apt, "purge", *leftover), check=False, timeout=600)
        finally:
            ns.close()
            purge_outside(apt)
    assert installed_test_packages() == []
    assert [path for path in LEFTOVERS if Path(path).exists()] == []
    assert not any(Path("/etc").glob("rc?.d/*ilt-*"))


def test_upgrades_under_running_daemons_become_events_once(host: Host) -> None:
    sandbox = host.sandbox
    # v1 with auto restarts on: the postinsts start the daemons through invoke-rc.d.
    host.apt_get("update")
    host.apt_get("install", *(f"{package}=1.0" for package in PACKAGES))
    started = time.monotonic()
    first = host.pids()
    assert all(first.values()), first
    assert sandbox.events() == []
    assert "post-invoke: packages changed: none" in host.hook_log()
    assert host.detect()["processes"]["findings"] == []

    host.interlock("auto-restarts", "off")
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))  # beyond the start-time tolerance

    # Only the libraries: no package with a service changed, so nothing is recorded, but the
    # daemons now run a replaced shared library and an upgraded Python package.
    host.apt_get("install", "libilt1", "python3-iltdep")
    assert sandbox.events() == []
    listed = host.detect()
    found = {f["service"]: f for f in listed["processes"]["findings"]}
    assert sorted(found) == list(DAEMONS)
    assert found["ilt-cdaemon"]["kind"] == "outdated-files"
    assert found["ilt-cdaemon"]["files"] == [f"{LIB_DIR}/libilt.so.1 (replaced)"]
    assert found["ilt-cdaemon"]["packages"] == ["libilt1"]
    for name in ("ilt-pydaemon", "ilt-pyworker"):
        assert found[name]["kind"] == "python"
        assert found[name]["packages"] == ["python3-iltdep 2.0"]  # imported through iltpy
    assert sandbox.events() == []  # listing records nothing

    # The daemons' packages: the gate refuses the restarts the postinsts ask for; nobody asks
    # about ilt-pyworker; the Post-Invoke hook reconciles. One event per service.
    upgrade = host.apt_get("install", "ilt-cdaemon", "ilt-pydaemon")
    assert upgrade.stdout.count(DENIED) + upgrade.stderr.count(DENIED) == 2
    assert "interlock: restart of ilt-pyworker deferred" in upgrade.stdout
    asked = (sandbox.paths.gate_log).read_text()
    assert "argv=['ilt-cdaemon', 'restart', '2'] answer=101" in asked
    assert "argv=['ilt-pydaemon', 'restart', '2'] answer=101" in asked
    assert "'ilt-pyworker', 'restart'" not in asked
    assert sandbox.reasons() == {
        "ilt-cdaemon": ["Package update: ilt-cdaemon 1.0 → 2.0"],
        "ilt-pydaemon": ["Package update: ilt-pydaemon 1.0 → 2.0"],
        "ilt-pyworker": ["Package update: ilt-pydaemon 1.0 → 2.0"],
    }
    assert host.pids() == first  # deferred, not restarted
    assert "post-invoke: ilt-pyworker: recorded" in host.hook_log()

    # Recording what the scan finds merges into the pending events, once, however often.
    for outcome in ("merged", "already pending"):
        recorded = host.detect("--record")["recorded"]
        assert sorted((r["service"], r["outcome"]) for r in recorded) == [
            (name, outcome) for name in DAEMONS
        ]
    python = "Python package(s) upgraded since start: ilt-pydaemon 2.0, python3-iltdep 2.0"
    assert sandbox.reasons() == {
        "ilt-cdaemon": [
            "Package update: ilt-cdaemon 1.0 → 2.0; Outdated file(s) in use: "
            f"{LIB_DIR}/libilt.so.1 (libilt1), /usr/sbin/ilt-cdaemon (ilt-cdaemon)"
        ],
        "ilt-pydaemon": [f"Package update: ilt-pydaemon 1.0 → 2.0; {python}"],
        "ilt-pyworker": [f"Package update: ilt-pydaemon 1.0 → 2.0; {python}"],
    }
    status = host.interlock("status", check=False)
    assert status.stdout.strip().endswith(
        "Services queued for restart: ilt-cdaemon, ilt-pydaemon, ilt-pyworker"
    )

    # The operator restarts what is owed: every event clears, nothing is outdated any more.
    restart = host.interlock("restart", "--deferred-only")
    assert restart.stdout.count("ok ") == 3, restart.stdout
    assert sandbox.events() == []
    after = host.pids()
    assert all(after[name] and after[name] != first[name] for name in DAEMONS), after
    assert host.detect()["processes"]["findings"] == []

    # Auto restarts on: the postinst's restart goes through, so the reinstall owes nothing.
    host.interlock("auto-restarts", "on")
    host.apt_get("install", "--reinstall", "ilt-cdaemon")
    assert "post-invoke: ilt-cdaemon: restarted (Package update: ilt-cdaemon 2.0 → 2.0)" in (
        host.hook_log()
    )
    assert sandbox.events() == []
    assert host.pids()["ilt-cdaemon"] != after["ilt-cdaemon"]


def test_deb_systemd_invoke_never_asks_after_the_first_refusal(
    namespaces_available: None, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Why the Post-Invoke reconciliation exists: the second unit is never asked about."""
    ns = NamespaceSession(tmp_path / "ns", sandbox.gate_script, {})
    ns.start()
    try:
        sandbox.auto_restarts(False)
        result = ns.run(
            ["deb-systemd-invoke", "restart", "ilt-a.service", "ilt-b.service"], check=False
        )
    finally:
        ns.close()
    assert result.returncode == 0
    assert "returned 101, not running" in result.stderr
    asked = sandbox.paths.gate_log.read_text()
    assert "argv=['ilt-a.service', 'restart'] answer=101" in asked
    assert "ilt-b" not in asked
    assert [e.service for e in sandbox.events()] == ["ilt-a.service"]
