"""Detection: what needs a restart besides what the gate deferred.

Watched configuration files (watch), package transactions reconciled by apt hooks
(transaction, apt_hooks, needrestart), and processes running outdated code (stale,
python_stale, mapping, findings), recorded in the ledger (recorder).
"""
