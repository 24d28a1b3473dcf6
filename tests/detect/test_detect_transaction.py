"""Package transactions: snapshot and reconciliation, the apt hooks, and needrestart's snippet.

The end-to-end run with real packages and real apt is in test_detect_packages.py; here are the
pure rules, the hook script run as apt runs it (no virtualenv on PATH, empty environment), the
apt.conf snippet read back by apt itself, and the needrestart snippet evaluated by Perl the way
needrestart evaluates it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detect.detect_sandbox import Sandbox
from interlock.detect.apt_hooks import (
    HookFiles,
    HookInstallError,
    install_hooks,
    render_apt_conf,
    uninstall_hooks,
)
from interlock.detect.needrestart import (
    perl_regex,
    render_snippet,
    restart_blocked_services,
    snippet_path,
    sync_needrestart,
)
from interlock.detect.system import System
from interlock.detect.transaction import (
    PackageChange,
    Snapshot,
    SnapshotStore,
    begin,
    changed_packages,
    finish,
    package_update_reason,
    restarted_during,
)
from interlock.errors import FileFormatError
from interlock.host.ledger import DeferredEvent, Ledger
from interlock.host.policy import render_policy
from interlock.host.services.base import ServiceState
from interlock.lab.sandbox import CLI

SNAPSHOT = Snapshot(1000.5, 900.25, {"cron": ("1", 5)}, {"/l/a.deferred": 990})


def test_changed_packages_are_upgrades_downgrades_and_reinstalls() -> None:
    before = {"a": ("1.0", 10), "b": ("2.0", 20), "c": ("3.0", 30), "gone": ("1", 1)}
    after = {"a": ("1.1", 11), "b": ("2.0", 21), "c": ("3.0", 30), "new": ("1", 1)}
    assert changed_packages(before, after) == [
        PackageChange("a", "1.0", "1.1"),
        PackageChange("b", "2.0", "2.0"),  # reinstalled: the files were replaced all the same
    ]


def test_package_update_reason() -> None:
    changes = [PackageChange("nova-compute", "1", "2"), PackageChange("nova-common", "1", "2")]
    assert package_update_reason(changes) == "Package update: nova-common 1 → 2, nova-compute 1 → 2"


@pytest.mark.parametrize(
    ("state", "systemd", "restarted"),
    [
        (ServiceState("s", True, 1, 900.30), False, True),  # sysv: the same clock, to a tick
        (ServiceState("s", True, 1, 900.20), False, False),
        (ServiceState("s", True, 1, 1000.0), True, True),  # systemd: whole seconds
        (ServiceState("s", True, 1, 999.0), True, False),
        (ServiceState("s", False), False, False),
    ],
)
def test_restarted_during_the_transaction(
    state: ServiceState, systemd: bool, restarted: bool
) -> None:
    assert restarted_during(state, SNAPSHOT, systemd) is restarted


def test_snapshot_round_trip_and_a_corrupt_file(sandbox: Sandbox) -> None:
    store = SnapshotStore(System.live(sandbox.root))
    store.save(SNAPSHOT)
    assert store.load() == SNAPSHOT
    store.path.write_text('{"format": 1, "packages": []}')
    with pytest.raises(FileFormatError) as caught:
        store.load()
    assert caught.value.path == str(store.path)


def test_an_unfinished_transaction_keeps_its_snapshot(sandbox: Sandbox) -> None:
    system = System.live(sandbox.root)
    first, kept = begin(system)
    assert not kept and "dpkg" in first.packages
    second, kept = begin(system)  # Post-Invoke never ran: the older start still counts
    assert kept and second == first
    report = finish(system)
    assert report.had_snapshot and report.changes == [] and report.services == []
    assert not finish(system).had_snapshot


def test_apt_reads_the_generated_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "50interlock"
    conf.write_text(render_apt_conf("/usr/lib/interlock/apt-hook"))
    dump = subprocess.run(
        ["apt-config", "-c", str(conf), "dump", "DPkg"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'DPkg::Pre-Invoke:: "/usr/lib/interlock/apt-hook pre-invoke || true";' in dump
    assert 'DPkg::Post-Invoke:: "/usr/lib/interlock/apt-hook post-invoke || true";' in dump
    with pytest.raises(HookInstallError, match=r"apt\.conf cannot carry"):
        render_apt_conf('/opt/"quoted"/hook')


def hooks_installed(files: HookFiles) -> bool:
    return files.apt_conf.is_file() and files.script.is_file()


def run_hook(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """As apt runs it: through sh, with an empty environment (no virtualenv on PATH)."""
    return subprocess.run(
        ["env", "-i", "/bin/sh", "-c", f"{script} {' '.join(args)} || true"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def test_hooks_install_run_and_uninstall(sandbox: Sandbox, tmp_path: Path) -> None:
    files = HookFiles.under(tmp_path / "image")
    system = System.live(sandbox.root)
    done = install_hooks(files, system, root=str(sandbox.root))
    assert hooks_installed(files)
    assert files.script.stat().st_mode & 0o777 == 0o755
    assert "needrestart is not installed: nothing to configure" in done
    assert files.apt_conf.read_text() == render_apt_conf("/usr/lib/interlock/apt-hook")
    assert install_hooks(files, system, root=str(sandbox.root)) == done  # idempotent

    pre = run_hook(files.script, "pre-invoke")
    assert pre.returncode == 0 and pre.stderr == ""
    assert SnapshotStore(system).load() is not None
    post = run_hook(files.script, "post-invoke")
    assert post.returncode == 0 and post.stderr == ""
    assert SnapshotStore(system).load() is None
    log = system.log_file.read_text()
    assert "pre-invoke: snapshot at" in log and "post-invoke: packages changed: none" in log

    (files.script.parent / "policy-rc.d").write_text("the gate lives here too\n")
    assert uninstall_hooks(files) == [f"removed {files.apt_conf}", f"removed {files.script}"]
    assert not hooks_installed(files) and files.script.parent.is_dir()
    assert uninstall_hooks(files) == []


def test_the_hook_never_makes_apt_fail(sandbox: Sandbox, tmp_path: Path) -> None:
    files = HookFiles.under(tmp_path / "image")
    system = System.live(sandbox.root)
    install_hooks(files, system, root=str(sandbox.root))
    store = SnapshotStore(system)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("garbage")
    broken = run_hook(files.script, "post-invoke")
    assert broken.returncode == 0
    assert "post-invoke failed: FileFormatError" in broken.stderr
    assert "post-invoke failed" in system.log_file.read_text()
    usage = run_hook(files.script, "sideways")
    assert usage.returncode == 0 and "usage: apt-hook" in usage.stderr

    missing = HookFiles.under(tmp_path / "other")
    install_hooks(
        missing,
        system,
        package_dir=str(tmp_path / "nowhere"),
        python="/usr/bin/python3",  # without the virtualenv, interlock is not importable
        root=str(sandbox.root),
    )
    unloadable = run_hook(missing.script, "pre-invoke")
    assert unloadable.returncode == 0
    assert "cannot load interlock" in unloadable.stderr


def test_policies_that_block_restarts_for_needrestart(tmp_path: Path) -> None:
    policies = tmp_path / "policy-rc.d"
    policies.mkdir()
    (policies / "charm-neutron-gateway.policy").write_text(
        render_policy(
            "neutron-gateway",
            "charm",
            {"neutron-dhcp-agent.service": ["restart", "stop"], "ovs-vswitchd": ["stop"]},
        )
    )
    assert restart_blocked_services(str(policies)) == ["neutron-dhcp-agent"]
    (policies / "interlock.policy").write_text(
        render_policy("interlock", "interlock", {"*": ["restart", "stop", "try-restart"]})
    )
    assert restart_blocked_services(str(policies)) == ["*"]
    (policies / "interlock.policy").unlink()
    (policies / "broken.policy").write_text("blocked_actions: [\n")
    assert restart_blocked_services(str(policies)) == ["*"]  # unknown: list, never restart


NEEDRESTART_HARNESS = r"""
# What needrestart does with a conf.d snippet (eval it after its own defaults) and with
# override_rc (first matching regex in sorted key order decides) in its l and a modes.
my %nrconf = (restart => 'a', override_rc => { qr(^dbus) => 0 });
my ($fn, @services) = @ARGV;
eval do { local(@ARGV, $/) = $fn; <> };
die "Error parsing $fn: $@" if($@);
print "restart=$nrconf{restart}\n";
for my $rc (@services) {
    my $restart = 1;
    foreach my $re (sort keys %{$nrconf{override_rc}}) {
        next unless($rc =~ /$re/);
        $restart = $nrconf{override_rc}->{$re};
        last;
    }
    print "$rc=$restart\n";
}
"""


def needrestart_decisions(snippet: Path, services: list[str]) -> dict[str, str]:
    output = subprocess.run(
        ["perl", "-e", NEEDRESTART_HARNESS, str(snippet), *services],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in output.splitlines())


@pytest.mark.skipif(shutil.which("perl") is None, reason="needs perl")
def test_needrestart_lists_instead_of_restarting_blocked_services(tmp_path: Path) -> None:
    snippet = tmp_path / "zz-interlock.conf"
    snippet.write_text(render_snippet(["nova-compute", "ovs@vswitchd", "a.b+c"]))
    services = [
        "nova-compute.service",
        "nova-compute",
        "nova-compute-api.service",
        "ovs@vswitchd.service",
        "a.b+c.service",
        "axb+c.service",
        "cron.service",
        "dbus.service",
    ]
    assert needrestart_decisions(snippet, services) == {
        "restart": "a",
        "nova-compute.service": "0",
        "nova-compute": "0",
        "nova-compute-api.service": "1",
        "ovs@vswitchd.service": "0",
        "a.b+c.service": "0",
        "axb+c.service": "1",  # the dot is escaped, not "any character"
        "cron.service": "1",
        "dbus.service": "0",  # needrestart's own defaults stay
    }
    snippet.write_text(render_snippet(["*"]))
    assert needrestart_decisions(snippet, ["cron.service"]) == {
        "restart": "l",
        "cron.service": "1",
    }
    assert perl_regex("nova-compute") == r"qr(^nova\-compute(?:\.service)?\z)"


def test_needrestart_snippet_follows_the_policies(tmp_path: Path) -> None:
    policies = tmp_path / "policy-rc.d"
    policies.mkdir()
    needrestart = tmp_path / "needrestart"
    assert sync_needrestart(str(policies), needrestart) is None  # not installed
    needrestart.mkdir()
    (policies / "interlock.policy").write_text(
        render_policy("interlock", "interlock", {"nova-compute": ["restart"]})
    )
    assert "nova-compute" in (sync_needrestart(str(policies), needrestart) or "")
    assert "nova" in snippet_path(needrestart).read_text()
    (policies / "interlock.policy").unlink()
    assert "removed" in (sync_needrestart(str(policies), needrestart) or "")
    assert not snippet_path(needrestart).exists()


def test_the_cli_installs_hooks_into_an_image_and_runs_a_transaction(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*CLI, "--root", str(image), "detect", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result

    installed = cli("install-hooks").stdout
    files = HookFiles.under(image)
    assert f"wrote {files.apt_conf}" in installed and hooks_installed(files)
    assert "/usr/lib/interlock/apt-hook pre-invoke" in files.apt_conf.read_text()  # as apt sees it
    assert "packages" in cli("snapshot").stdout
    report = json.loads(cli("reconcile", "--json").stdout)
    assert report == {"packages": [], "services": [], "snapshot": True}
    assert "No transaction snapshot" in cli("reconcile").stdout
    assert f"removed {files.apt_conf}" in cli("uninstall-hooks").stdout
    assert "no hooks were installed" in cli("uninstall-hooks").stdout
    assert "exit codes: 0 nothing found" in cli("--help").stdout


class FakeHost:
    """A private dpkg database (read by the real dpkg-query) and one sysv service, `fakesvc`,
    whose main process is a real `sleep` named by the init script's pidfile."""

    def __init__(self, base: Path, sandbox: Sandbox) -> None:
        self.admin = base / "dpkg"
        (self.admin / "info").mkdir(parents=True)
        self.init_dir = base / "init.d"
        self.init_dir.mkdir()
        self.pidfile = base / "fakesvc.pid"
        script = self.init_dir / "fakesvc"
        script.write_text(f"#!/bin/sh\nPIDFILE={self.pidfile}\n")
        script.chmod(0o755)
        self.system = System(sandbox.paths, dpkg_dir=str(self.admin), init_dir=str(self.init_dir))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.install("1.0")

    def install(self, version: str) -> None:
        (self.admin / "status").write_text(
            f"Package: fakepkg\nStatus: install ok installed\nVersion: {version}\n"
            "Architecture: all\nMaintainer: tests <root@localhost>\nDescription: fake\n\n"
        )
        list_file = self.admin / "info" / "fakepkg.list"
        list_file.write_text("/.\n/etc\n/etc/init.d\n/etc/init.d/fakesvc\n")
        stamp = time.time_ns() + len(self.processes)  # a new unpack stamp every time
        os.utime(list_file, ns=(stamp, stamp))

    def start(self) -> None:
        # Start times are known to a clock tick (10 ms): keep starts and snapshots further
        # apart than that, as they always are around a real dpkg run.
        time.sleep(0.05)
        process = subprocess.Popen(["sleep", "300"])
        self.processes.append(process)
        self.pidfile.write_text(f"{process.pid}\n")
        time.sleep(0.05)

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def fake_host(tmp_path: Path, sandbox: Sandbox) -> Iterator[FakeHost]:
    host = FakeHost(tmp_path / "host", sandbox)
    try:
        yield host
    finally:
        host.stop_all()


def upgrade(host: FakeHost, version: str) -> list[tuple[str, str]]:
    begin(host.system)
    host.install(version)
    report = finish(host.system)
    return [(outcome.service, outcome.outcome) for outcome in report.services]


def test_reconcile_records_a_running_service_that_did_not_restart(
    fake_host: FakeHost, sandbox: Sandbox
) -> None:
    fake_host.start()
    assert upgrade(fake_host, "2.0") == [("fakesvc", "recorded")]
    assert sandbox.reasons() == {"fakesvc": ["Package update: fakepkg 1.0 → 2.0"]}
    assert upgrade(fake_host, "3.0") == [("fakesvc", "merged")]  # still one event
    assert sandbox.reasons() == {
        "fakesvc": ["Package update: fakepkg 1.0 → 2.0, fakepkg 2.0 → 3.0"]
    }


def test_reconcile_skips_restarted_and_stopped_services(
    fake_host: FakeHost, sandbox: Sandbox
) -> None:
    fake_host.start()
    begin(fake_host.system)
    fake_host.install("2.0")
    fake_host.start()  # the postinst restarted it
    assert [(s.service, s.outcome) for s in finish(fake_host.system).services] == [
        ("fakesvc", "restarted")
    ]
    fake_host.stop_all()
    assert upgrade(fake_host, "3.0") == [("fakesvc", "not running")]
    assert sandbox.events() == []


def test_reconcile_adds_to_the_event_that_is_already_owed(
    fake_host: FakeHost, sandbox: Sandbox
) -> None:
    fake_host.start()
    ledger = Ledger(str(sandbox.paths.ledger_dir))
    ledger.record(DeferredEvent("fakesvc", "restart", "Package update", 100, "ovn", "charm"))
    assert upgrade(fake_host, "2.0") == [("fakesvc", "merged")]
    assert sandbox.reasons() == {"fakesvc": ["Package update: fakepkg 1.0 → 2.0"]}

    # A refusal during the transaction (the gate writes the event): details merged, nothing new.
    begin(fake_host.system)
    ledger.record(
        DeferredEvent("fakesvc", "restart", "Package update", int(time.time()), "ovn", "charm")
    )
    fake_host.install("3.0")
    assert [(s.service, s.outcome) for s in finish(fake_host.system).services] == [
        ("fakesvc", "refused during the transaction")
    ]
    assert sandbox.reasons() == {
        "fakesvc": ["Package update: fakepkg 1.0 → 2.0, fakepkg 2.0 → 3.0"]
    }
