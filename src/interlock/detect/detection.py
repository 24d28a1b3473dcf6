"""`interlock detect`: watched files and outdated processes, listed, and recorded on request."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock.detect.findings import ProcessReport, find_outdated_processes
from interlock.detect.recorder import Recorded, merge_reasons, record_restart
from interlock.detect.system import System
from interlock.detect.watch import WatchReport
from interlock.detect.watch import check as check_watch
from interlock.host.ledger import Ledger


@dataclass(frozen=True)
class DetectionReport:
    watch: WatchReport | None
    processes: ProcessReport | None
    recorded: list[Recorded] = field(default_factory=list)

    def process_reasons(self) -> dict[str, str]:
        """Service → one reason merging every finding of its processes."""
        reasons: dict[str, str] = {}
        for finding in self.processes.findings if self.processes else []:
            if finding.service is None:
                continue
            old = reasons.get(finding.service)
            reasons[finding.service] = (
                finding.reason if old is None else merge_reasons(old, finding.reason)
            )
        return dict(sorted(reasons.items()))

    @property
    def found(self) -> bool:
        return bool(
            (self.watch and self.watch.scan.changes) or (self.processes and self.processes.findings)
        )


def detect(
    system: System, record: bool = False, watch: bool = True, processes: bool = True
) -> DetectionReport:
    """Look; with `record`, act: record (or, for watched files with auto restarts on, restart)."""
    watch_report = check_watch(system, apply=record) if watch else None
    process_report = find_outdated_processes(system) if processes else None
    report = DetectionReport(watch_report, process_report)
    if not record or process_report is None:
        return report
    ledger = Ledger(str(system.paths.ledger_dir))
    recorded = [
        record_restart(ledger, service, reason)
        for service, reason in report.process_reasons().items()
    ]
    return DetectionReport(watch_report, process_report, recorded)
