"""Parent of a lab's host processes (stdlib only): spawns them, then reaps them and their orphans.

Daemons started inside a host (through start-stop-daemon, `haproxy -D`) are orphaned at once. As
a child subreaper this process becomes their parent, so they are reaped the moment they exit and
an init script waiting for a stopped daemon to disappear is not fooled by a zombie.

A host that reboots is started again: when something inside a PID namespace calls reboot(2) to
restart, the kernel ends the namespace's init with SIGHUP (SIGINT for a power-off), and
`unshare --fork` passes that signal on to itself. A host process ending by SIGHUP is spawned
again with the same argv (a bounded number of times a minute, so a host that dies at boot does
not loop); any other end, a power-off included, is final. Each (re)start of a host whose init is
the launcher's child is written to its `record` file: the host-side PIDs and the PID namespace
it boots in, next to this process's own (what the lab's reboot command checks before calling
reboot(2)); the lab's state file gets the new PIDs.

stdin: JSON {"env": {...}, "state": lab.json path or absent, "hosts": [{"name": ..., "argv":
[...], "log": path, "init": "self" | "child", "record": path or absent}, ...]}.
stdout: JSON {name: pid or {"error": text}}, then closed. Exits once no descendant is left.
SIGTERM: start nothing more (hosts not yet spawned are skipped, none is restarted); keep reaping
until none is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
RESTARTS_PER_MINUTE = 5
INIT_WAIT = 10.0


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def spawn(argv: list[str], env: dict[str, str], log: str) -> int:
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, env, file_actions=actions)


class Stop:
    requested = False

    @classmethod
    def on_signal(cls, signum: int, frame: FrameType | None) -> None:
        cls.requested = True


def say(message: str) -> None:
    sys.stderr.write(f"lab-keeper: {message}\n")
    sys.stderr.flush()


def write_json(path: str, document: Any) -> None:
    """Temp file and rename: a reader sees the old document or the new one."""
    temp = f"{path}.keeper-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as out:
        out.write(json.dumps(document, indent=2) + "\n")
    os.replace(temp, path)


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def namespace_init(pid: int) -> int | None:
    """The launcher's child in a new PID namespace (`unshare --fork` runs the host's init as
    one; short-lived helpers the launcher runs first stay in its namespace), once it exists."""
    deadline = time.monotonic() + INIT_WAIT
    outside = pid_namespace(pid)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as file:
                kids = [int(kid) for kid in file.read().split()]
            for kid in kids:
                if pid_namespace(kid) not in (None, outside):
                    return kid
        if not os.path.exists(f"/proc/{pid}"):
            return None
        time.sleep(0.01)
    return None


def record_launch(state: str | None, entry: dict[str, Any], launcher: int) -> None:
    """Write the host's launch record and its new PIDs into the lab's state file."""
    init = launcher
    if entry.get("init") == "child":
        found = namespace_init(launcher)
        if found is None:
            say(f"{entry['name']}: no init appeared under launcher {launcher}")
            return
        init = found
        if entry.get("record"):
            with contextlib.suppress(OSError):
                write_json(
                    entry["record"],
                    {
                        "init_pid": init,
                        "launcher_pid": launcher,
                        "pid_namespace": pid_namespace(init),
                        "outside_pid_namespace": pid_namespace(os.getpid()),
                    },
                )
    if state is None:
        return
    with contextlib.suppress(OSError, ValueError, KeyError), open(f"{state}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(state, encoding="utf-8") as file:
            document = json.load(file)
        for host in document["hosts"]:
            if host["name"] == entry["name"]:
                host["pid"], host["launcher_pid"] = init, launcher
        write_json(state, document)


def may_restart(entry: dict[str, Any], restarts: dict[str, list[float]]) -> bool:
    now = time.monotonic()
    recent = [moment for moment in restarts.get(entry["name"], []) if now - moment < 60]
    restarts[entry["name"]] = [*recent, now]
    return len(recent) < RESTARTS_PER_MINUTE


def main() -> int:
    signal.signal(signal.SIGTERM, Stop.on_signal)
    become_subreaper()
    text = sys.stdin.read()
    if not text.strip():
        return 0  # the caller went away before asking for anything
    request = json.loads(text)
    state = request.get("state")
    started: dict[str, int | dict[str, str]] = {}
    launchers: dict[int, dict[str, Any]] = {}
    for entry in request["hosts"]:
        if Stop.requested:
            started[entry["name"]] = {"error": "teardown began before this host was started"}
            continue
        try:
            pid = spawn(entry["argv"], request["env"], entry["log"])
        except OSError as exc:
            started[entry["name"]] = {"error": str(exc)}
            continue
        started[entry["name"]] = pid
        launchers[pid] = entry
    sys.stdout.write(json.dumps(started) + "\n")
    sys.stdout.flush()
    # Nobody reads from here on; a closed pipe must not break the reaping loop.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    for pid, entry in launchers.items():
        if entry.get("record"):
            record_launch(None, entry, pid)
    restarts: dict[str, list[float]] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        entry = launchers.pop(pid, None)
        if entry is None:
            continue
        rebooted = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP
        if not rebooted or Stop.requested:
            continue
        if not may_restart(entry, restarts):
            say(f"{entry['name']}: rebooted {RESTARTS_PER_MINUTE} times within a minute: left down")
            continue
        if entry.get("record"):
            # The old boot's record must not vouch for whatever namespace comes next.
            with contextlib.suppress(OSError):
                os.unlink(entry["record"])
        try:
            new = spawn(entry["argv"], request["env"], entry["log"])
        except OSError as exc:
            say(f"{entry['name']}: cannot start it again after its reboot: {exc}")
            continue
        launchers[new] = entry
        say(f"{entry['name']}: rebooted; started again as {new}")
        record_launch(state, entry, new)


if __name__ == "__main__":
    sys.exit(main())
