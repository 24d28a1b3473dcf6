"""Processes that run outdated code, each with its service and a reason a person understands."""

from __future__ import annotations

import os
from dataclasses import dataclass

from interlock.detect.dpkg import DpkgError, FileOwners, installed_packages
from interlock.detect.mapping import ServiceMapper
from interlock.detect.python_stale import ImportGraph, outdated_code, python_files
from interlock.detect.stale import StaleFile, scan_processes
from interlock.detect.system import System
from interlock.host.services.sysv import read_boot_time

OUTDATED_FILES = "Outdated file(s) in use"
PYTHON_PACKAGES = "Python package(s) upgraded since start"
PYTHON_FILES = "Python file(s) changed since start"


@dataclass(frozen=True)
class ProcessFinding:
    """One process that needs a restart, and why."""

    pid: int
    command: str
    service: str | None
    kind: str  # "outdated-files" or "python"
    reason: str
    files: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "command": self.command,
            "service": self.service,
            "kind": self.kind,
            "reason": self.reason,
            "files": list(self.files),
            "packages": list(self.packages),
        }


@dataclass(frozen=True)
class ProcessReport:
    scanned: int
    findings: list[ProcessFinding]
    foreign: tuple[int, ...]  # processes whose root or mount namespace could not be read


def _with_owners(files: tuple[StaleFile, ...], owners: FileOwners) -> list[StaleFile]:
    return [StaleFile(f.path, f.why, owners.owner(f.path)) for f in files]


def find_outdated_processes(system: System, python: bool = True) -> ProcessReport:
    """Scan /proc once; explain each outdated process and map it to its service."""
    scan = scan_processes(system.proc)
    mapper = ServiceMapper(system.proc, system.init_dir, system.systemd)
    owners = FileOwners(system.dpkg_dir, ("/",))
    findings: list[ProcessFinding] = []
    for pid, stale in sorted(scan.stale.items()):
        stat = mapper.stat(pid)
        described = _with_owners(stale, owners)
        packages = sorted({f.package for f in described if f.package})
        findings.append(
            ProcessFinding(
                pid,
                stat.comm if stat else "?",
                mapper.service_of(pid),
                "outdated-files",
                f"{OUTDATED_FILES}: {', '.join(sorted(f.describe() for f in described))}",
                tuple(sorted(f"{f.path} ({f.why})" for f in described)),
                tuple(packages),
            )
        )
    if python and scan.pythons:
        findings.extend(_python_findings(system, scan.pythons, mapper, owners))
    return ProcessReport(scan.scanned, findings, scan.foreign)


def _python_findings(
    system: System, pids: tuple[int, ...], mapper: ServiceMapper, owners: FileOwners
) -> list[ProcessFinding]:
    graph = ImportGraph()
    boot = read_boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    versions: dict[str, str] | None = None
    findings = []
    for pid in pids:
        stat = mapper.stat(pid)
        files = python_files(system.proc, pid, graph)
        if stat is None or not files:
            continue
        code = outdated_code(files, boot + stat.start_ticks / ticks, owners, system.dpkg_dir)
        if not code.packages and not code.files:
            continue
        if versions is None:
            try:
                versions = {
                    name: p.version for name, p in installed_packages(system.dpkg_dir).items()
                }
            except DpkgError:
                versions = {}
        named = [f"{name} {versions[name]}" if name in versions else name for name in code.packages]
        parts = []
        if named:
            parts.append(f"{PYTHON_PACKAGES}: {', '.join(named)}")
        if code.files:
            parts.append(f"{PYTHON_FILES}: {', '.join(code.files)}")
        findings.append(
            ProcessFinding(
                pid,
                stat.comm,
                mapper.service_of(pid),
                "python",
                "; ".join(parts),
                code.files,
                tuple(named),
            )
        )
    return findings
