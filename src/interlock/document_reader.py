"""Reading a YAML document (a rollout spec, an upgrade recipe) into typed records.

The shared half of those readers: every shape check ends in a FileFormatError that names the
file and the line of the offending key, using the line marks of interlock's YAML loader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from interlock.errors import FileFormatError
from interlock.fleet.inventory import MarkedMap

T = TypeVar("T")


class MarkedReader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str, line: int | None) -> FileFormatError:
        return FileFormatError(self.path, message, line)

    def mapping(self, data: MarkedMap, key: str, keys: Sequence[str] | None) -> MarkedMap:
        """`data[key]` as a mapping (empty when absent), with only `keys` allowed in it."""
        value = data.get(key)
        if value is None:
            empty = MarkedMap()
            empty.line = data.line_of(key)
            empty.key_lines = {}
            return empty
        if not isinstance(value, MarkedMap):
            raise self.fail(f"{key} must be a mapping", data.line_of(key))
        if keys is not None:
            self.check_keys(value, keys, key)
        return value

    def check_keys(self, data: MarkedMap, keys: Sequence[str], where: str) -> None:
        for key in data:
            if key not in keys:
                raise self.fail(
                    f"{where}: unknown key {key!r} (expected one of {', '.join(keys)})",
                    data.line_of(key),
                )

    def value(self, data: MarkedMap, key: str, parse: Callable[[Any], T], where: str) -> T:
        try:
            return parse(data[key])
        except ValueError as exc:
            raise self.fail(f"{where}.{key}: {exc}", data.line_of(key)) from None

    def choice(self, data: MarkedMap, key: str, choices: Sequence[str], where: str) -> str:
        value = data[key]
        if value not in choices:
            raise self.fail(
                f"{where}.{key} must be one of {', '.join(choices)}, not {value!r}",
                data.line_of(key),
            )
        return str(value)
