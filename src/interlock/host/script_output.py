"""How the bash scripts run on hosts write their output: in a few large writes.

Over SSH each write of a host's script tends to become a packet of its own, and each packet costs
the reading side far more than its bytes do; bash's echo and printf write once per call. So the
scripts collect their lines with `put` and write them out at exit, when they pass 64 KiB, or
before a command of their own writes to the same output (`flush` first).
"""

from __future__ import annotations

BUFFERED = r"""
out=""
flush() { printf '%s' "$out"; out=""; }
put() {
  local line
  for line do out+=$line$'\n'; done
  (( ${#out} < 65536 )) || flush
}
trap flush EXIT
"""
