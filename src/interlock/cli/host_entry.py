"""The `interlock` command on a host, as `fleet install` puts it there: host commands only.

The gate, the ledger and its hooks, detection. The fleet, rollout, upgrade, load-balancer and
lab commands run on the operator's machine and are not in the host's copy.
"""

from __future__ import annotations

import sys

from interlock.cli.main import main as cli_main

HOST_GROUPS = ("host", "gate", "detect")


def main() -> int:
    return cli_main(groups=HOST_GROUPS)


if __name__ == "__main__":
    sys.exit(main())
