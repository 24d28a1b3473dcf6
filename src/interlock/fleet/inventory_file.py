"""Which inventory format a file holds, read into the one Inventory record."""

from __future__ import annotations

import re
from pathlib import Path

from interlock.documents import MarkedMap, load_yaml, read_text
from interlock.errors import FileFormatError
from interlock.fleet import ansible_inventory
from interlock.fleet.interlock_inventory import read_interlock_yaml
from interlock.fleet.inventory import Inventory

YAML_SUFFIXES = frozenset({".yml", ".yaml", ".json"})


def load_inventory(path: str | Path) -> Inventory:
    """Read interlock's YAML inventory or an Ansible INI/YAML inventory, whichever `path` holds.

    A top-level `hosts:` key marks interlock's format (Ansible's YAML has groups at the top).
    Otherwise, as Ansible decides: `.yml`, `.yaml` and `.json` files are YAML, others are INI.
    """
    source = Path(path)
    text = read_text(source)
    suffix = source.suffix.lower()
    if suffix not in YAML_SUFFIXES and not _INTERLOCK_MARK_RE.search(text):
        return ansible_inventory.read_ini(text, source)
    data = load_yaml(text, str(source))
    if not isinstance(data, MarkedMap):
        raise FileFormatError(str(source), "an inventory must be a YAML mapping", 1)
    if "hosts" in data:
        return read_interlock_yaml(data, source)
    return ansible_inventory.read_yaml(data, source)


_INTERLOCK_MARK_RE = re.compile(r"^hosts:", re.MULTILINE)
