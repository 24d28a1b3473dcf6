"""Parent of a lab's host processes (stdlib only): spawns them, then reaps them and their orphans.

Daemons started inside a host (through start-stop-daemon, `haproxy -D`) are orphaned at once. As
a child subreaper this process becomes their parent, so they are reaped the moment they exit and
an init script waiting for a stopped daemon to disappear is not fooled by a zombie.

stdin: JSON {"env": {...}, "hosts": [{"name": ..., "argv": [...], "log": path}, ...]}.
stdout: JSON {name: pid or {"error": text}}, then closed. Exits once no descendant is left.
SIGTERM: start nothing more (hosts not yet spawned are skipped); keep reaping until none is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from types import FrameType

PR_SET_CHILD_SUBREAPER = 36


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


def main() -> int:
    signal.signal(signal.SIGTERM, Stop.on_signal)
    become_subreaper()
    text = sys.stdin.read()
    if not text.strip():
        return 0  # the caller went away before asking for anything
    request = json.loads(text)
    started: dict[str, int | dict[str, str]] = {}
    for entry in request["hosts"]:
        if Stop.requested:
            started[entry["name"]] = {"error": "teardown began before this host was started"}
            continue
        try:
            started[entry["name"]] = spawn(entry["argv"], request["env"], entry["log"])
        except OSError as exc:
            started[entry["name"]] = {"error": str(exc)}
    sys.stdout.write(json.dumps(started) + "\n")
    sys.stdout.flush()
    # Nobody reads from here on; a closed pipe must not break the reaping loop.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
