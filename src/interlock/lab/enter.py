"""Running a command inside a lab host without SSH: nsenter into the namespaces of its processes."""

from __future__ import annotations

from collections.abc import Sequence

# What a login on a lab host would have; nothing of the caller's environment leaks in.
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

# Writes stdin to $1 atomically (temp file in the same directory, then rename) with mode $2.
WRITE_FILE_SCRIPT = (
    'set -e; dir=$(dirname "$1"); mkdir -p "$dir"; tmp=$(mktemp "$dir/.lab-write.XXXXXX"); '
    'trap \'rm -f "$tmp"\' EXIT; cat > "$tmp"; chmod "$2" "$tmp"; mv -f "$tmp" "$1"; trap - EXIT'
)


def enter_argv(pid: int, pid_namespace: bool, argv: Sequence[str], kind: str = "sysv") -> list[str]:
    """argv running `argv` in the mount, UTS and network (and PID) namespaces of host-side `pid`;
    for a systemd host also in its IPC and cgroup namespaces and its root directory."""
    namespaces = ["-m", "-u", "-n", *(["-p"] if pid_namespace else [])]
    if kind == "systemd":
        namespaces += ["-i", "-C", "-r", "-w"]
    return ["nsenter", "-t", str(pid), *namespaces, "--", *argv]


def write_file_argv(path: str, mode: int) -> list[str]:
    return ["sh", "-c", WRITE_FILE_SCRIPT, "lab-write", path, f"{mode:o}"]
