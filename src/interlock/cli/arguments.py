"""Argument types for numbers on the command line: a bound or a count that makes sense or a
refusal naming the option, before anything is touched.

`--timeout 0` or `-5` once made every host "unreachable within -5 s"; `nan` and `inf` are
floats to Python and nonsense to a timeout.
"""

from __future__ import annotations

import argparse
import math

# Larger counts are typing mistakes, and would make windows and lists of absurd sizes.
MAX_COUNT = 1_000_000
# A week: longer bounds are mistakes for a command someone waits for.
MAX_SECONDS = 7 * 24 * 3600.0


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SECONDS:g} seconds, not {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A timeout or an interval: more than 0 seconds."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def seconds_or_zero(text: str) -> float:
    """A bound where 0 means "do not wait" (and the help says what happens then)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text!r}")
    return value


def positive_count(text: str) -> int:
    """A number of hosts or runs: a whole number from 1 up."""
    if not text.strip().isdigit() or len(text.strip()) > 7:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to {MAX_COUNT}: {text!r}")
    value = int(text)
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to {MAX_COUNT}: {text!r}")
    return value
