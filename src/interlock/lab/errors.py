"""Errors of the lab: each says what failed and where to look (a host's log, a command's output)."""

from __future__ import annotations

from interlock.errors import InterlockError


class LabError(InterlockError):
    """The lab could not be built, inspected or torn down."""
