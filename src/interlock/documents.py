"""YAML documents that remember where things were written, and the reader of their shapes.

Inventories, rollout specs and upgrade recipes are all read through here: duplicate keys are
refused, mappings and sequences carry line numbers, and every shape check ends in a
FileFormatError that names the file and the line of the offending key.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from interlock.errors import FileFormatError

T = TypeVar("T")
MAX_FILE_BYTES = 16 * 2**20


def read_text(path: Path) -> str:
    """A file's text, refused when it is no regular file (a FIFO would block forever) or is
    larger than any inventory, variables, spec or recipe file is."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise FileFormatError(str(path), "not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise FileFormatError(str(path), f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(str(path), f"not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise FileFormatError(str(path), f"cannot read: {exc.strerror or exc}") from None


# --- YAML that remembers where things were written -------------------------------------------


class MarkedMap(dict[Any, Any]):
    """A YAML mapping that knows the line it starts on and the line of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: object) -> int:
        return self.key_lines.get(key, self.line)


class MarkedSeq(list[Any]):
    """A YAML sequence that knows the line of each item."""

    line: int = 0
    item_lines: list[int]


class VaultValue(str):
    """An Ansible Vault ciphertext: kept opaque, never decrypted."""

    __slots__ = ()


class _MarkingLoader(yaml.CSafeLoader):
    def __init__(self, stream: str, path: str) -> None:
        super().__init__(stream)
        self.path = path


def _construct_map(loader: _MarkingLoader, node: yaml.MappingNode) -> MarkedMap:
    result = MarkedMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    seen: dict[object, int] = {}
    # Duplicates are checked on the keys as written; merge keys (<<) may legitimately repeat
    # keys that the mapping then overrides.
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:
            raise FileFormatError(
                loader.path, "a mapping key must be a plain value", line
            ) from None
        if first is not None:
            raise FileFormatError(
                loader.path, f"duplicate key {key!r} (first on line {first})", line
            )
        seen[key] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _MarkingLoader, node: yaml.SequenceNode) -> MarkedSeq:
    result = MarkedSeq(loader.construct_object(item, deep=True) for item in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [item.start_mark.line + 1 for item in node.value]
    return result


def _construct_vault(loader: _MarkingLoader, node: yaml.ScalarNode) -> VaultValue:
    return VaultValue(loader.construct_scalar(node))


def _construct_unsafe(loader: _MarkingLoader, node: yaml.Node) -> object:
    # Ansible's !unsafe only marks a value as not-a-template; the value itself is plain.
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return _construct_seq(loader, node)
    if isinstance(node, yaml.MappingNode):
        return _construct_map(loader, node)
    raise FileFormatError(loader.path, "unsupported !unsafe value", node.start_mark.line + 1)


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_MarkingLoader.add_constructor("!vault", _construct_vault)
_MarkingLoader.add_constructor("!unsafe", _construct_unsafe)


def load_yaml(text: str, path: str) -> object:
    """One YAML document with duplicate keys refused; mappings and sequences carry line numbers."""
    loader = _MarkingLoader(text, path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise FileFormatError(path, message, line) from None
        raise FileFormatError(path, f"not valid YAML: {message}", line) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


# --- reading typed records out of a marked document ---------------------------------------------


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
                # `x-...` keys hold YAML anchors for reuse; they are allowed but not advertised.
                expected = ", ".join(k for k in keys if not k.startswith("x-"))
                raise self.fail(
                    f"{where}: unknown key {key!r} (expected one of: {expected})",
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
