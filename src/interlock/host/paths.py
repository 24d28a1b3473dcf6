"""Where a host keeps what interlock reads and writes, in one place a chroot or test can move."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from interlock.host.gate import CACHE_FILE, CONFIG_PATH, LOG_FILE
from interlock.host.hooks import STATE_DIR
from interlock.host.ledger import LEDGER_DIR
from interlock.host.policy import POLICY_DIR


@dataclass(frozen=True)
class HostPaths:
    policy_dir: Path = Path(POLICY_DIR)
    ledger_dir: Path = Path(LEDGER_DIR)
    state_dir: Path = Path(STATE_DIR)
    gate_config: Path = Path(CONFIG_PATH)
    gate_log: Path = Path(LOG_FILE)
    gate_cache: Path = Path(CACHE_FILE)

    @classmethod
    def under(cls, root: str | Path) -> HostPaths:
        """The same layout below another root (a chroot, an image, a test's directory)."""
        base = Path(root)
        return cls(
            *(
                base / str(path).lstrip("/")
                for path in (POLICY_DIR, LEDGER_DIR, STATE_DIR, CONFIG_PATH, LOG_FILE, CACHE_FILE)
            )
        )
