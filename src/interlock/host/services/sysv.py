"""sysv init scripts: the service's process found by its pidfile, its start time from /proc.

Real init scripts name their pidfile in many ways (`PIDFILE`, rabbitmq-server's `PID_FILE`,
ssh's inline `--pidfile`), and some disagree with their daemon (memcached's script passes
`/run/memcached.pid` while `/etc/memcached.conf` makes the daemon write
`/run/memcached/memcached.pid`). So a service's main process is, in order: the first live pid
in any of those pidfiles that belongs to the script's `DAEMON` (it runs it, or descends from a
process that does: rabbitmq-server's script starts `beam.smp`), or, when `DAEMON` is a script or
unknown, that started before its pidfile was written (not a reused pid); failing all pidfiles,
the oldest topmost process running `DAEMON` found in /proc.

A process's start time is field 22 of `/proc/<pid>/stat` (clock ticks since boot) plus the boot
time; the pid together with its start tick identifies one instance exactly. Actions run the init
script directly with a clean environment, as `service` does; that bypasses policy-rc.d on
purpose, since the operator asked.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from dataclasses import dataclass

from interlock.host.policy import canonical_service, is_valid_service_name
from interlock.host.services.base import (
    START_TIME_JITTER,
    ServiceError,
    ServiceManager,
    ServiceState,
)

INIT_DIR = "/etc/init.d"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "TERM": "dumb"}

# A DAEMON= that names one of these runs a program given as an argument: its processes are not
# told apart by the executable, so /proc is not scanned for them.
INTERPRETERS = ("python", "perl", "ruby", "java", "node", "php", "sh", "bash", "dash")


@dataclass(frozen=True)
class InitScriptInfo:
    pidfile: str | None  # the first of `pidfiles`
    daemon: str | None
    pidfiles: tuple[str, ...] = ()


def is_pidfile_variable(name: str) -> bool:
    """PIDFILE, PID_FILE, PIDFILE_NGINX, SSHD_PIDFILE, …: any variable naming a pidfile."""
    return "PIDFILE" in name.replace("_", "")


def _expand(value: str, known: dict[str, str]) -> str | None:
    """Expand `$VAR`/`${VAR}` from earlier plain assignments; anything fancier is unknown."""
    if "`" in value or "$(" in value:
        return None
    out = value
    for name, replacement in sorted(known.items(), key=lambda item: -len(item[0])):
        out = out.replace("${" + name + "}", replacement).replace("$" + name, replacement)
    return None if "$" in out else out


def _inline_paths(text: str, known: dict[str, str], flag: str) -> list[str]:
    """Every `FLAG PATH` / `FLAG=PATH` (`--pidfile`, `--exec`) whose PATH is known without
    running anything."""
    words = text.replace("=", " ").replace('"', " ").replace("'", " ").split()
    found = []
    for option, value in itertools.pairwise(words):
        if option == flag:
            path = _expand(value, known)
            if path and path.startswith("/"):
                found.append(path)
    return found


def parse_init_script(text: str) -> InitScriptInfo:
    """Find the pidfile variables and DAEMON= in an init script's text, without running it."""
    known: dict[str, str] = {}
    pidfiles: list[str] = []
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
            if is_pidfile_variable(name) and expanded.startswith("/"):
                pidfiles.append(expanded)
    # Scripts without a PIDFILE variable often name it inline (ssh: `--pidfile /run/sshd.pid`).
    pidfiles += _inline_paths(text, known, "--pidfile")
    unique = tuple(dict.fromkeys(pidfiles))
    # Without DAEMON=, what start-stop-daemon runs (ssh: `--exec /usr/sbin/sshd`).
    daemon = known.get("DAEMON") or next(iter(_inline_paths(text, known, "--exec")), None)
    return InitScriptInfo(
        unique[0] if unique else None,
        daemon if daemon and daemon.startswith("/") else None,
        unique,
    )


def parse_start_ticks(stat_text: str) -> int:
    """Field 22 of /proc/<pid>/stat; the command name (field 2) may contain spaces and ')'."""
    after_comm = stat_text[stat_text.rindex(")") + 2 :]
    return int(after_comm.split()[19])  # fields 3.. → field 22 is index 19


def parse_parent_pid(stat_text: str) -> int:
    """Field 4 of /proc/<pid>/stat."""
    return int(stat_text[stat_text.rindex(")") + 2 :].split()[1])


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
    ticks = _start_ticks(pid)
    return None if ticks is None else boot_time + ticks / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    text = _stat(pid)
    try:
        return None if text is None else parse_start_ticks(text)
    except (ValueError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    text = _stat(pid)
    try:
        return None if text is None else parse_parent_pid(text)
    except (ValueError, IndexError):
        return None


def instance_id(pid: int, ticks: int) -> str:
    """One run of one process: a pid is reused, a pid with its start tick is not."""
    return f"{pid}@{ticks}"


def pidfile_candidates(service: str, info: InitScriptInfo) -> list[str]:
    """Where the service's pidfile may be: the script's own, then the usual places."""
    candidates = [
        *info.pidfiles,
        f"/run/{service}.pid",
        f"/var/run/{service}.pid",
        f"/run/{service}/{service}.pid",
    ]
    if info.daemon:
        daemon = os.path.basename(info.daemon)
        candidates += [f"/run/{daemon}.pid", f"/run/{daemon}/{daemon}.pid"]
    return list(dict.fromkeys(candidates))


def runs_daemon(daemon: str, exe: str | None, comm: str | None) -> bool:
    """Whether a process is the init script's DAEMON: its executable, or for a script run by an
    interpreter, its command name (the kernel names a script's process after the script)."""
    if exe is not None and exe.removesuffix(" (deleted)") in (daemon, os.path.realpath(daemon)):
        return True
    return comm is not None and comm == os.path.basename(daemon)[:15]


def is_script(path: str) -> bool:
    """An interpreted DAEMON (`#!`): its process tree, not its executable, identifies it."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


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


def _is_daemon(pid: int, daemon: str) -> bool:
    return runs_daemon(daemon, _proc_link(pid), _proc_comm(pid))


def _descends_from_daemon(pid: int, daemon: str) -> bool:
    """The process runs DAEMON, or one of its ancestors (below PID 1) does."""
    current: int | None = pid
    for _ in range(64):
        if current is None or current <= 1:
            return False
        if _is_daemon(current, daemon):
            return True
        current = _parent(current)
    return False


def _read_pidfile(path: str) -> tuple[int, float] | None:
    """The pid a pidfile names and when the file was written."""
    try:
        with open(path, encoding="ascii") as handle:
            written = os.fstat(handle.fileno()).st_mtime
            pid = int(handle.read(64).split()[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return (pid, written) if pid > 1 else None


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
        boot = read_boot_time()
        scripted = info.daemon is None or is_script(info.daemon)
        for pidfile in pidfile_candidates(canonical_service(name), info):
            found = _read_pidfile(pidfile)
            if found is None:
                continue
            pid, written = found
            started = process_start_time(pid, boot)
            if started is None:
                continue  # stale: nothing runs under that pid
            if info.daemon and _descends_from_daemon(pid, info.daemon):
                return pid
            if scripted and started <= written + START_TIME_JITTER:
                return pid  # written by (or after) this process, so not a reused pid
        if info.daemon is None or os.path.basename(info.daemon).startswith(INTERPRETERS):
            return None  # every python3 process is not this service's
        return self._scan(info.daemon)

    def _scan(self, daemon: str) -> int | None:
        """The oldest process running DAEMON whose parent does not: the daemon's top process."""
        found: list[tuple[int, int]] = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) <= 1:
                continue
            pid = int(entry.name)
            if not _is_daemon(pid, daemon):
                continue
            parent = _parent(pid)
            ticks = _start_ticks(pid)
            if ticks is None or (parent is not None and parent > 1 and _is_daemon(parent, daemon)):
                continue
            found.append((ticks, pid))
        return min(found)[1] if found else None

    def state(self, name: str) -> ServiceState:
        pid = self.main_pid(name)
        if pid is None:
            return ServiceState(name, active=False)
        boot = read_boot_time()
        ticks = _start_ticks(pid)
        if ticks is None:
            return ServiceState(name, active=False)
        # The tick count is truncated and the boot time errs early: a lower bound of the
        # real start, which is what `started_after` needs.
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
        return ServiceState(name, True, pid, started, invocation=instance_id(pid, ticks))

    def instance_alive(self, state: ServiceState) -> bool:
        if state.pid is None or state.invocation is None:
            return False
        ticks = _start_ticks(state.pid)
        return ticks is not None and instance_id(state.pid, ticks) == state.invocation

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
