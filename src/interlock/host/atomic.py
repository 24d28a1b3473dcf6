"""Atomic file replacement: a reader sees the old content or the new, never a torn file."""

from __future__ import annotations

import os


def unique_suffix() -> str:
    """A random hex string for temporary and event file names (uuid4-shaped, without `uuid`)."""
    raw = os.urandom(16).hex()
    variant = "89ab"[int(raw[16], 16) & 3]
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{variant}{raw[17:20]}-{raw[20:32]}"


def write_atomic(path: str, data: str | bytes, mode: int = 0o644, exclusive: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename.

    With `exclusive`, refuse (FileExistsError) when `path` already exists, so a new file never
    replaces another writer's. The file and the directory entry are flushed to disk before this
    returns: a crash after it cannot lose the write.
    """
    directory, name = os.path.split(path)
    directory = directory or "."
    temp = os.path.join(directory, f".{name}.{unique_suffix()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not change the mode readers expect
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(temp, path)  # fails if `path` exists; rename would silently replace it
            os.unlink(temp)
        else:
            os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    sync_directory(directory)


def sync_directory(directory: str) -> None:
    """Flush a directory's entries (a rename or unlink) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLock:
    """An exclusive `flock` on a lock file, held for a `with` block; shared by every writer.

    A lock file that is a symbolic link is an error (OSError ELOOP), never followed.
    """

    __slots__ = ("fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> FileLock:
        import fcntl

        # Never through a symbolic link: root would create or lock whatever it points to.
        self.fd = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644
        )
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1
