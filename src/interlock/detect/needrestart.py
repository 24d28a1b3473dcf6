"""Keeping needrestart from restarting what a policy blocks.

needrestart runs after apt (its own DPkg::Post-Invoke hook) and restarts services with
`systemctl restart` or the init script directly: policy-rc.d never sees those restarts. Its
configuration is Perl; `/etc/needrestart/needrestart.conf` evaluates every
`/etc/needrestart/conf.d/*.conf` in sorted order, so a late file name wins. Two settings matter:

- `$nrconf{restart}`: `l` lists only, `i` asks, `a` restarts automatically. interlock sets `l`
  while a policy blocks restarts of every service (`'*'`, i.e. `interlock auto-restarts off`).
- `$nrconf{override_rc}`: regex → 0 or 1, the default selection per service; in `l` and `a`
  modes a service whose first matching regex (in sorted key order) is 0 is skipped and listed
  under "Service restart being deferred". interlock adds `^<service>(\\.service)?\\z => 0` for every
  service a policy blocks.

detect's Pre-Invoke hook rewrites the snippet before every apt run, so it follows the policies of
the moment; nothing is written when needrestart is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from interlock.host.atomic import write_atomic
from interlock.host.policy import ANY_SERVICE, covering_action, load_policies

NEEDRESTART_DIR = "/etc/needrestart"
SNIPPET = "conf.d/zz-interlock.conf"


def restart_blocked_services(policy_dir: str) -> list[str]:
    """Services whose restart a policy blocks; `['*']` for all (or when a policy is unreadable)."""
    policies, problems = load_policies(policy_dir)
    if problems:
        return [ANY_SERVICE]
    blocked = set()
    for policy in policies:
        for service, actions in policy.blocked.items():
            if covering_action(actions, "restart") is not None:
                blocked.add(service)
    return [ANY_SERVICE] if ANY_SERVICE in blocked else sorted(blocked)


def perl_regex(service: str) -> str:
    """A service name as a Perl `qr()` pattern matching it with or without `.service`."""
    escaped = "".join(char if char.isalnum() or char == "_" else f"\\{char}" for char in service)
    return f"qr(^{escaped}(?:\\.service)?\\z)"


def render_snippet(blocked: list[str]) -> str:
    lines = [
        "# Managed by interlock (interlock detect install-hooks); rewritten before every apt run.",
        "# Services a policy-rc.d policy blocks are listed, not restarted: they are deferred.",
    ]
    if ANY_SERVICE in blocked:
        lines.append("$nrconf{restart} = 'l';")
    else:
        lines.extend(f"$nrconf{{override_rc}}->{{{perl_regex(s)}}} = 0;" for s in blocked)
    lines.append("1;")
    return "\n".join(lines) + "\n"


def snippet_path(needrestart_dir: Path) -> Path:
    return needrestart_dir / SNIPPET


def sync_needrestart(policy_dir: str, needrestart_dir: Path) -> str | None:
    """Write (or remove) the snippet; None when needrestart is not installed."""
    if not needrestart_dir.is_dir():
        return None
    path = snippet_path(needrestart_dir)
    blocked = restart_blocked_services(policy_dir)
    if not blocked:
        path.unlink(missing_ok=True)
        return f"removed {path}: no policy blocks a restart"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_atomic(str(path), render_snippet(blocked))
    shown = "every service" if blocked == [ANY_SERVICE] else ", ".join(blocked)
    return f"wrote {path}: needrestart lists instead of restarting {shown}"


def remove_snippet(needrestart_dir: Path) -> str | None:
    path = snippet_path(needrestart_dir)
    if not os.path.lexists(path):
        return None
    path.unlink()
    return f"removed {path}"
