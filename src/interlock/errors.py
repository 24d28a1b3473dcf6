"""Errors an operator can act on: what was wrong and, where there is one, the file and line."""

from __future__ import annotations


class InterlockError(Exception):
    """Base of every error interlock reports to a person (exit code 1 unless said otherwise)."""

    exit_code = 1


class UsageError(InterlockError):
    """The command line asked for something contradictory or unsafe (exit code 2, like argparse)."""

    exit_code = 2


class FileFormatError(InterlockError):
    """A file interlock reads is not in the expected format."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")
