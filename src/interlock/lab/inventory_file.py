"""The lab's inventory.yaml in interlock's own inventory format, for every fleet command to use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from interlock.lab.spec import ADMIN_SOCKET, API_PORT, LabHost

INVENTORY_FILE = "inventory.yaml"
GROUPS = ("controllers", "computes", "lbs")


def render_inventory(hosts: Sequence[LabHost], client_key: Path, known_hosts: Path) -> str:
    document = {
        "defaults": {"user": "root", "port": 22, "key": str(client_key)},
        "known_hosts": str(known_hosts),
        "hosts": {
            host.name: {
                "address": host.address,
                "groups": list(host.groups),
                "labels": dict(host.labels),
                "vars": {},
            }
            for host in hosts
        },
        "groups": {
            group: {
                "vars": {"api_port": API_PORT} if group == "controllers" else {},
                "children": [],
            }
            for group in GROUPS
        },
        "loadbalancers": {
            host.name: {"host": host.name, "socket": ADMIN_SOCKET}
            for host in hosts
            if host.role == "lb"
        },
    }
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
    return "# interlock inventory of a lab (written by `interlock lab up`)\n" + body
