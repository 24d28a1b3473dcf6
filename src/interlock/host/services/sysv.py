"""sysv init scripts: the service's process found by its pidfile, its start time from /proc.

A process's start time is field 22 of `/proc/<pid>/stat` (clock ticks since boot) plus the boot
time (`btime` in `/proc/stat`, whole seconds). Actions run the init script directly with a clean
environment, as `service` does; that bypasses policy-rc.d on purpose, since the operator asked.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from dataclasses import dataclass

from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.host.services.base import ServiceError, ServiceManager, ServiceState

INIT_DIR = "/etc/init.d"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "TERM": "dumb"}


@dataclass(frozen=True)
class InitScriptInfo:
    pidfile: str | None
    daemon: str | None


def _expand(value: str, known: dict[str, str]) -> str | None:
    """Expand `$VAR`/`${VAR}` from earlier plain assignments; anything fancier is unknown."""
    if "`" in value or "$(" in value:
        return None
    out = value
    for name, replacement in sorted(known.items(), key=lambda item: -len(item[0])):
        out = out.replace("${" + name + "}", replacement).replace("$" + name, replacement)
    return None if "$" in out else out


def _inline_pidfile(text: str, known: dict[str, str]) -> str | None:
    """The first `--pidfile PATH` / `--pidfile=PATH` whose PATH is known without running."""
    words = text.replace("=", " ").replace('"', " ").replace("'", " ").split()
    for option, value in itertools.pairwise(words):
        if option == "--pidfile":
            path = _expand(value, known)
            if path and path.startswith("/"):
                return path
    return None


def parse_init_script(text: str) -> InitScriptInfo:
    """Find PIDFILE= and DAEMON= in an init script's text, without running it."""
    known: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, sep, value = line.partition("=")
        if not sep or not name.isidentifier() or not name.isupper() or " " in name:
            continue
        value = value.split("#", 1)[0].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if not value or " " in value or ";" in value:
            continue
        expanded = _expand(value, known)
        if expanded is not None:
            known.setdefault(name, expanded)
    # Scripts without a PIDFILE variable often name it inline (ssh: `--pidfile /run/sshd.pid`).
    pidfile = known.get("PIDFILE") or _inline_pidfile(text, known)
    daemon = known.get("DAEMON")
    return InitScriptInfo(
        pidfile if pidfile and pidfile.startswith("/") else None,
        daemon if daemon and daemon.startswith("/") else None,
    )


def parse_start_ticks(stat_text: str) -> int:
    """Field 22 of /proc/<pid>/stat; the command name (field 2) may contain spaces and ')'."""
    after_comm = stat_text[stat_text.rindex(")") + 2 :]
    return int(after_comm.split()[19])  # fields 3.. → field 22 is index 19


def parse_uptime(text: str) -> float:
    return float(text.split()[0])


UPTIME_RESOLUTION = 0.01  # /proc/uptime is truncated to the hundredth of a second


def boot_time_from(now: float, uptime: float) -> float:
    """Boot time in epoch seconds to the hundredth: `btime` in /proc/stat is truncated to the
    second, which would blur "started after" by up to a second. Reading the clock before the
    uptime, and allowing for the uptime's truncation, makes the result err early, so start
    times derived from it stay lower bounds."""
    return now - uptime - UPTIME_RESOLUTION


def read_boot_time() -> float:
    now = time.time()
    with open("/proc/uptime", encoding="ascii") as handle:
        return boot_time_from(now, parse_uptime(handle.read()))


def process_start_time(pid: int, boot_time: float) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            ticks = parse_start_ticks(handle.read())
    except (OSError, ValueError, IndexError):
        return None
    return boot_time + ticks / os.sysconf("SC_CLK_TCK")


def pidfile_candidates(service: str, info: InitScriptInfo) -> list[str]:
    """Where the service's pidfile may be: the script's own, then the usual places."""
    candidates = [
        info.pidfile,
        f"/run/{service}.pid",
        f"/var/run/{service}.pid",
        f"/run/{service}/{service}.pid",
    ]
    return [path for path in candidates if path]


def runs_daemon(daemon: str, exe: str | None, comm: str | None) -> bool:
    """Whether a process is the init script's DAEMON: its executable, or for a script run by an
    interpreter, its command name (the kernel names a script's process after the script)."""
    if exe is not None and exe.removesuffix(" (deleted)") in (daemon, os.path.realpath(daemon)):
        return True
    return comm is not None and comm == os.path.basename(daemon)[:15]


def _proc_link(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _proc_comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


class SysvManager(ServiceManager):
    kind = "sysv"

    def __init__(self, init_dir: str = INIT_DIR) -> None:
        self.init_dir = init_dir

    def script(self, name: str) -> str:
        service = canonical_service(name)
        if not is_valid_service_name(service) or "/" in service:
            raise ServiceError(f"{name!r} is not a valid service name")
        return os.path.join(self.init_dir, service)

    def exists(self, name: str) -> bool:
        path = self.script(name)
        return os.path.isfile(path) and os.access(path, os.X_OK)

    def info(self, name: str) -> InitScriptInfo:
        try:
            with open(self.script(name), encoding="utf-8", errors="replace") as handle:
                return parse_init_script(handle.read())
        except OSError:
            return InitScriptInfo(None, None)

    def main_pid(self, name: str) -> int | None:
        info = self.info(name)
        for pidfile in pidfile_candidates(canonical_service(name), info):
            try:
                with open(pidfile, encoding="ascii") as handle:
                    pid = int(handle.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
                continue
            if info.daemon and not runs_daemon(info.daemon, _proc_link(pid), _proc_comm(pid)):
                continue  # a stale pidfile whose pid now belongs to something else
            return pid
        return None

    def state(self, name: str) -> ServiceState:
        pid = self.main_pid(name)
        if pid is None:
            return ServiceState(name, active=False)
        started = process_start_time(pid, read_boot_time())
        if started is None:
            return ServiceState(name, active=False)
        # The tick count is truncated and the boot time errs early: a lower bound of the
        # real start, which is what `started_after` needs.
        return ServiceState(name, True, pid, started)

    def act(self, name: str, action: str) -> None:
        script = self.script(name)
        if not self.exists(name):
            raise ServiceError(f"{name}: no init script at {script}")
        try:
            result = subprocess.run(
                [script, action],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
                env=CLEAN_ENV,
                cwd="/",
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{script} {action} did not finish in {exc.timeout:g}s") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ServiceError(
                f"{script} {action} exited {result.returncode}: {' / '.join(detail)}"
            )
