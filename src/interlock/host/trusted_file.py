"""Files the gate trusts, and how their content may appear in a message.

Policies, events, the gate's configuration, its policy cache and deferred hooks decide what root
does (or runs) during a package operation. A file among them is read only if it is a regular file
reached without a symbolic link, owned by root (or by the user reading it, for a tree of one's
own), not writable by group or others, and within a size cap; at most cap + 1 bytes are read. Its
directory must pass the same owner and mode checks. Anything else is reported as a problem naming
the file and is never opened through, followed or read whole. A FIFO or device does not hang the
reader: files are opened non-blocking and refused unless regular.

On the gate's hot path: standard library modules loaded at start-up only.
"""

from __future__ import annotations

import errno
import os

from interlock.errors import FileFormatError

POLICY_MAX_BYTES = 1 << 20
EVENT_MAX_BYTES = 64 << 10
QUOTE_MAX_CHARS = 80

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_FORMAT_MASK = 0o170000
_REGULAR = 0o100000
_DIRECTORY = 0o040000


def size_text(limit: int) -> str:
    if limit % (1 << 20) == 0:
        return f"{limit >> 20} MiB"
    if limit % (1 << 10) == 0:
        return f"{limit >> 10} KiB"
    return f"{limit} bytes"


def distrust(st: os.stat_result) -> str | None:
    """Why a file or directory with this status may not be trusted, or None."""
    if st.st_uid != 0 and st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        return "writable by others than its owner"
    return None


def directory_problem(directory: str) -> FileFormatError | None:
    """A problem if the directory exists and is not trustworthy; None if it is, or is absent."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if st.st_mode & _FORMAT_MASK != _DIRECTORY:
        return FileFormatError(directory, "not a directory")
    reason = distrust(st)
    return None if reason is None else FileFormatError(directory, f"{reason}; not read")


def read_bytes(path: str, limit: int) -> bytes:
    """The content of a trusted file of at most `limit` bytes.

    Raises FileNotFoundError when there is no such file (callers decide what absence means),
    and FileFormatError for everything that makes the file untrustworthy or unreadable.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileFormatError(path, "a symbolic link; not read") from None
        raise FileFormatError(path, f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & _FORMAT_MASK != _REGULAR:
            raise FileFormatError(path, "not a regular file; not read")
        reason = distrust(st)
        if reason is not None:
            raise FileFormatError(path, f"{reason}; not read")
        too_big = FileFormatError(path, f"larger than {size_text(limit)}; not read")
        if st.st_size > limit:
            raise too_big
        chunks = []
        wanted = limit + 1  # one byte more tells a file that grew past the cap
        while wanted > 0:
            chunk = os.read(fd, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        if wanted <= 0:
            raise too_big
        return b"".join(chunks)
    except OSError as exc:
        raise FileFormatError(path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: str, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (anything else is a FileFormatError naming the line)."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileFormatError(path, "not UTF-8 text", line) from None


def quoted(value: object, limit: int = QUOTE_MAX_CHARS) -> str:
    """A value from a file as a message may show it: repr-quoted, escaped, and bounded."""
    if isinstance(value, str):
        shown = repr(value[: limit + 1])
        if len(value) <= limit and len(shown) <= limit + 2:
            return shown
        return shown[: limit + 1] + "…" + shown[0]
    if isinstance(value, dict | list | tuple | set):
        # Never render a container: a YAML structure can be far larger than its text.
        return f"a {type(value).__name__}"
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def excerpt(text: str, limit: int = QUOTE_MAX_CHARS) -> str:
    """Free text from elsewhere (a parser's message) made one bounded line without controls."""
    cleaned = "".join(
        char if char.isprintable() else repr(char)[1:-1] for char in text[: limit * 2]
    )
    return cleaned if len(cleaned) <= limit and len(text) <= limit * 2 else cleaned[:limit] + "…"
