"""A small YAML reader for the policy and deferred-event files, fast enough for the gate.

The gate runs for every service action of every package install under ``python3 -I -S``, where
PyYAML is not importable and importing ``re`` or ``typing`` alone would cost more than the whole
decision. The files it reads are produced by PyYAML's dumper (block or flow style, plain or quoted
scalars, lines folded at 80 columns), so this reader covers exactly that subset. It either returns
what ``yaml.safe_load`` returns for the same text or raises: a construct it does not know (tags,
block scalars, exotic numbers) raises :class:`UnsupportedYaml`, and callers that can import PyYAML
fall back to it. Anchors and aliases raise :class:`RefusedYaml`: these files never need them, and
nested aliases are how a few hundred bytes become gigabytes. The test suite checks both halves of
that promise against PyYAML.
"""

from __future__ import annotations

from interlock.host.trusted_file import quoted

_BOOLS = {
    "yes": True, "Yes": True, "YES": True,
    "no": False, "No": False, "NO": False,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
    "on": True, "On": True, "ON": True, "off": False, "Off": False, "OFF": False,
}  # fmt: skip
_NULLS = {"", "~", "null", "Null", "NULL"}
_DIGITS = "0123456789"
_FLOW_INDICATORS = ",[]{}"
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
    "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
    "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# Characters a YAML stream may not contain at all (PyYAML refuses the whole document).
_NOT_YAML = frozenset(
    map(chr, (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0x85),
              *range(0x86, 0xA0), 0xFFFE, 0xFFFF))
)  # fmt: skip
_UNICODE_BREAKS = ("\x85", "\u2028", "\u2029")
_NUMBER_CHARS = frozenset("0123456789_+-.: xabcdefABCDEFiInNtTZ")


class YamlError(Exception):
    """The text is not valid YAML (or not the kind of YAML these files hold)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.message = message
        self.line = line


class UnsupportedYaml(YamlError):
    """Valid YAML that this reader does not handle; a full YAML parser may."""


ANCHORS_REFUSED = "YAML anchors and aliases are refused (these files never need them)"


class RefusedYaml(YamlError):
    """Valid YAML these files must not use: no parser, however complete, may read it.

    Anchors and aliases: a few hundred bytes of nested aliases expand to gigabytes in any reader
    that builds or prints the structure.
    """


def load(text: str) -> object:
    """Parse one YAML document made of mappings, sequences and scalars."""
    return _Reader(text).document()


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _resolve_plain(text: str, line: int) -> object:
    """Give a plain scalar the type PyYAML's SafeLoader would (YAML 1.1 core types)."""
    if text in _NULLS:
        return None
    boolean = _BOOLS.get(text)
    if boolean is not None:
        return boolean
    if text in ("=", "<<"):
        raise UnsupportedYaml(f"the YAML 1.1 value/merge key {quoted(text)}", line)
    first = text[0]
    if first in _DIGITS or (first in "+-." and len(text) > 1):
        body = text[1:] if first in "+-" else text
        if body and all(c in _DIGITS for c in body) and (len(body) == 1 or body[0] != "0"):
            return int(text)
        if _maybe_number(text) and _is_yaml11_number(text):
            raise UnsupportedYaml(f"number form {quoted(text)}", line)
    return text


def _is_yaml11_number(text: str) -> bool:
    """Whether PyYAML reads `text` as an int, a float or a timestamp rather than a string.

    Only reached for rare number-like words, so importing `re` here costs the gate nothing.
    """
    import re

    sign, digits_ = "[-+]?", "[0-9][0-9_]*"
    base60 = "(?::[0-5]?[0-9])+"
    forms = (
        # YAML 1.1 int: binary, octal, decimal, hexadecimal, base 60
        f"{sign}0b[01_]+",
        f"{sign}0[0-7_]+",
        f"{sign}(?:0|[1-9][0-9_]*)",
        f"{sign}0x[0-9a-fA-F_]+",
        f"{sign}[1-9][0-9_]*{base60}",
        # YAML 1.1 float: decimal with a point, base 60, infinity, not-a-number
        f"{sign}{digits_}\\.[0-9_]*(?:[eE][-+][0-9]+)?",
        "\\.[0-9_]+(?:[eE][-+][0-9]+)?",
        f"{sign}{digits_}{base60}\\.[0-9_]*",
        f"{sign}\\.(?:inf|Inf|INF)",
        "\\.(?:nan|NaN|NAN)",
        # YAML 1.1 timestamp: a date, or a date and a time
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \\t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}"
        "(?:\\.[0-9]*)?(?:[ \\t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?",
    )
    return any(re.fullmatch(form, text) for form in forms)


def _maybe_number(text: str) -> bool:
    """A cheap superset of the YAML 1.1 number and timestamp forms (avoids `re` for words)."""
    return all(c in _NUMBER_CHARS for c in text)


class _Reader:
    __slots__ = ("col", "lines", "n", "row")

    def __init__(self, text: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        if not _NOT_YAML.isdisjoint(text):
            index = next(i for i, char in enumerate(text) if char in _NOT_YAML)
            raise YamlError("a control character YAML does not allow", _line_at(text, index))
        if "\r" in text:
            # CR LF and a lone CR are line breaks that read as LF, in scalars too.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        for special in ("\t", *_UNICODE_BREAKS):
            # Tabs are valid only in a few places, and NEL/LS/PS fold differently: let a full
            # parser judge the rare file that has them (PyYAML never writes them raw).
            if special in text:
                raise UnsupportedYaml(
                    f"character U+{ord(special):04X}", _line_at(text, text.index(special))
                )
        self.lines = text.split("\n")
        self.n = len(self.lines)
        self.row = 0
        self.col = 0

    # -- position helpers -------------------------------------------------------------------

    def error(self, message: str) -> YamlError:
        return YamlError(message, self.row + 1)

    def unsupported(self, message: str) -> UnsupportedYaml:
        return UnsupportedYaml(message, self.row + 1)

    def refused(self) -> RefusedYaml:
        return RefusedYaml(ANCHORS_REFUSED, self.row + 1)

    def skip_blank_lines(self) -> bool:
        """Move to the first content character at or after the cursor; False at the end."""
        while self.row < self.n:
            line = self.lines[self.row]
            col = self.col
            length = len(line)
            while col < length and line[col] == " ":
                col += 1
            if col < length and line[col] != "#":
                self.col = col
                return True
            self.row += 1
            self.col = 0
        return False

    def rest_is_empty(self) -> bool:
        """After a value: only spaces or a comment may follow on this line."""
        line = self.lines[self.row]
        col = self.col
        while col < len(line) and line[col] == " ":
            col += 1
        if col < len(line) and line[col] != "#":
            return False
        if col < len(line) and col > 0 and line[col - 1] != " ":
            return False
        self.row += 1
        self.col = 0
        return True

    # -- documents ---------------------------------------------------------------------------

    def document(self) -> object:
        if not self.skip_blank_lines():
            return None
        line = self.lines[self.row]
        if line.startswith("%"):
            raise self.unsupported("YAML directives")
        if line.startswith("---") and (len(line) == 3 or line[3] in " #"):
            self.col = 3
            if not self.rest_is_empty():
                raise self.unsupported("content on the '---' line")
        elif self.at_document_marker():
            raise self.error("'...' ends a document that never started")
        value = self.block_node(-1)
        if self.skip_blank_lines():
            line = self.lines[self.row]
            if line.startswith("...") and (len(line) == 3 or line[3] in " #"):
                self.col = 3
                if not self.rest_is_empty():
                    raise self.error("content after '...' on its line")
                if self.skip_blank_lines():
                    raise self.unsupported("more than one document")
            elif line.startswith("---"):
                raise self.unsupported("more than one document")
            else:
                raise self.error("unexpected content (bad indentation?)")
        return value

    # -- block context -----------------------------------------------------------------------

    def block_node(self, parent_indent: int, seq_ok_at_parent: bool = False) -> object:
        if not self.skip_blank_lines():
            return None
        indent = self.col
        line = self.lines[self.row]
        char = line[indent]
        is_seq = char == "-" and (indent + 1 == len(line) or line[indent + 1] == " ")
        if indent < parent_indent or (
            indent == parent_indent and not (seq_ok_at_parent and is_seq)
        ):
            return None
        if is_seq:
            return self.block_sequence(indent)
        if self.at_document_marker():
            return None
        if char in "&*":
            raise self.refused()
        if char in "!|>?%@`":
            raise self.unsupported(f"'{char}' (tags, block scalars and complex keys)")
        self.no_flow_end(char)
        if char in "[{":
            value = self.flow_node()
            if self.at_mapping_colon():
                raise self.unsupported("a flow collection used as a mapping key")
            if not self.rest_is_empty():
                raise self.error("unexpected text after a flow collection")
            return value
        start_row = self.row
        key_or_value = self.scalar_token(block=True)
        if self.at_mapping_colon():
            if key_or_value == ("", False):
                raise self.error("a mapping entry without a key")
            if self.row != start_row:
                raise self.error("a mapping key must fit on one line")
            return self.block_mapping(indent, key_or_value)
        return self.finish_block_scalar(key_or_value, parent_indent)

    def no_flow_end(self, char: str) -> None:
        """`,` `]` `}` cannot start a plain scalar outside a flow collection."""
        if char in ",]}":
            raise self.error(f"'{char}' outside a flow collection (quote the value)")

    def at_document_marker(self) -> bool:
        line = self.lines[self.row]
        return (
            self.col == 0
            and line.startswith(("---", "..."))
            and (len(line) == 3 or line[3] in " #")
        )

    def at_mapping_colon(self) -> bool:
        line = self.lines[self.row] if self.row < self.n else ""
        col = self.col
        while col < len(line) and line[col] == " ":
            col += 1
        if col < len(line) and line[col] == ":" and (col + 1 == len(line) or line[col + 1] == " "):
            self.col = col + 1
            return True
        return False

    def block_mapping(self, indent: int, first_key: tuple[object, bool]) -> dict[object, object]:
        result: dict[object, object] = {}
        key_token = first_key
        while True:
            key = self.scalar_value(key_token)
            if isinstance(key, list | dict):
                raise self.unsupported("complex mapping key")
            if key in result:
                raise self.error(f"duplicate key {quoted(key)}")
            result[key] = self.mapping_value(indent)
            if not self.skip_blank_lines():
                return result
            col = self.col
            if col < indent or self.at_document_marker():
                return result
            if col > indent:
                raise self.error("bad indentation of a mapping entry")
            line = self.lines[self.row]
            if line[col] == "-" and (col + 1 == len(line) or line[col + 1] == " "):
                raise self.error("a sequence entry where a mapping key was expected")
            if line[col] in "&*":
                raise self.refused()
            if line[col] in "!|>?[{%@`":
                raise self.unsupported(f"'{line[col]}' as a mapping key")
            self.no_flow_end(line[col])
            start_row = self.row
            key_token = self.scalar_token(block=True)
            if not self.at_mapping_colon():
                raise self.error("expected ':' after a mapping key")
            if key_token == ("", False):
                raise self.error("a mapping entry without a key")
            if self.row != start_row:
                raise self.error("a mapping key must fit on one line")

    def mapping_value(self, indent: int) -> object:
        line = self.lines[self.row]
        col = self.col
        while col < len(line) and line[col] == " ":
            col += 1
        if col >= len(line) or line[col] == "#":
            self.row += 1
            self.col = 0
            return self.block_node(indent, seq_ok_at_parent=True)
        self.col = col
        char = line[col]
        if char in "&*":
            raise self.refused()
        if char in "!|>?%@`":
            raise self.unsupported(f"'{char}' (tags, block scalars and complex keys)")
        if char == "-" and (col + 1 == len(line) or line[col + 1] == " "):
            raise self.error("a block sequence cannot start on the line of its key")
        self.no_flow_end(char)
        if char in "[{":
            value = self.flow_node()
            if not self.rest_is_empty():
                raise self.error("unexpected text after a flow collection")
            return value
        token = self.scalar_token(block=True)
        if self.at_mapping_colon():
            raise self.error("mapping values are not allowed here (quote the value)")
        return self.finish_block_scalar(token, indent)

    def block_sequence(self, indent: int) -> list[object]:
        result: list[object] = []
        while True:
            line = self.lines[self.row]
            self.col = indent + 1
            col = self.col
            while col < len(line) and line[col] == " ":
                col += 1
            if col >= len(line) or line[col] == "#":
                self.row += 1
                self.col = 0
                result.append(self.block_node(indent))
            else:
                self.col = col
                char = line[col]
                if char in "&*":
                    raise self.refused()
                if char in "!|>?%@`":
                    raise self.unsupported(f"'{char}' in a sequence entry")
                if char == "-" and (col + 1 == len(line) or line[col + 1] == " "):
                    raise self.unsupported("nested block sequences")
                self.no_flow_end(char)
                if char in "[{":
                    result.append(self.flow_node())
                    if not self.rest_is_empty():
                        raise self.error("unexpected text after a flow collection")
                else:
                    token = self.scalar_token(block=True)
                    if self.at_mapping_colon():
                        raise self.unsupported("mappings inside block sequences")
                    result.append(self.finish_block_scalar(token, indent))
            if not self.skip_blank_lines():
                return result
            col = self.col
            line = self.lines[self.row]
            if col < indent or self.at_document_marker():
                return result
            if col > indent:
                raise self.error("bad indentation of a sequence entry")
            if not (line[col] == "-" and (col + 1 == len(line) or line[col + 1] == " ")):
                return result

    def finish_block_scalar(self, token: tuple[object, bool], parent_indent: int) -> object:
        """A block scalar may continue on more-indented lines (PyYAML folds long values)."""
        text, quoted = token
        if quoted:
            if not self.rest_is_empty():
                raise self.error("unexpected text after a quoted scalar")
            return text
        assert isinstance(text, str)
        start_row = self.row
        # A comment ends a plain scalar: nothing after it may continue the value.
        commented = self.lines[self.row][self.col :].lstrip(" ").startswith("#")
        self.row += 1
        self.col = 0
        pieces = [text]
        newlines = 0
        while self.row < self.n and not commented:
            line = self.lines[self.row]
            stripped = line.strip(" ")
            if not stripped:
                newlines += 1
                self.row += 1
                continue
            lead = len(line) - len(line.lstrip(" "))
            if lead <= parent_indent or stripped.startswith("#"):
                break
            if line.startswith(("---", "..."), lead) and lead == 0:
                break
            piece, commented = self.plain_continuation(line, lead)
            pieces.append("\n" * newlines if newlines else " ")
            pieces.append(piece)
            newlines = 0
            self.row += 1
        self.col = 0
        value = "".join(pieces)
        return _resolve_plain(value, start_row + 1) if len(pieces) == 1 else value

    def plain_continuation(self, line: str, lead: int) -> tuple[str, bool]:
        """One more line of a multi-line plain scalar, and whether a comment ends it."""
        end = len(line)
        commented = False
        for index in range(lead, len(line)):
            char = line[index]
            if char == "#" and line[index - 1] == " ":
                end = index
                commented = True
                break
            if char == ":" and (index + 1 == len(line) or line[index + 1] == " "):
                raise self.error("mapping values are not allowed here (quote the value)")
        piece = line[lead:end].rstrip(" ")
        if piece[0] in "&*!|>%@`" or (piece[0] == "-" and piece[1:2] in ("", " ")):
            raise self.unsupported("indicator at the start of a continuation line")
        return piece, commented

    # -- scalars ------------------------------------------------------------------------------

    def scalar_value(self, token: tuple[object, bool]) -> object:
        text, quoted = token
        if quoted or not isinstance(text, str):
            return text
        return _resolve_plain(text, self.row + 1)

    def scalar_token(self, block: bool) -> tuple[object, bool]:
        """Read one scalar at the cursor: (text, quoted). Plain text is not resolved yet."""
        line = self.lines[self.row]
        char = line[self.col]
        if char == "'":
            return self.single_quoted(), True
        if char == '"':
            return self.double_quoted(), True
        start = self.col
        col = start
        length = len(line)
        while col < length:
            c = line[col]
            if c == ":" and (
                col + 1 == length
                or line[col + 1] == " "
                or (not block and line[col + 1] in _FLOW_INDICATORS)
            ):
                break
            if c == "#" and col > start and line[col - 1] == " ":
                break
            if not block and c in _FLOW_INDICATORS:
                break
            col += 1
        self.col = col
        return line[start:col].rstrip(" "), False

    def single_quoted(self) -> str:
        start_row = self.row
        parts: list[str] = []
        col = self.col + 1
        while True:
            line = self.lines[self.row]
            end = line.find("'", col)
            while end != -1 and end + 1 < len(line) and line[end + 1] == "'":
                parts.append(line[col : end + 1])
                col = end + 2
                end = line.find("'", col)
            if end != -1:
                parts.append(line[col:end])
                self.col = end + 1
                return "".join(parts)
            parts.append(line[col:].rstrip(" "))
            col = self.fold_quoted_break(parts, start_row)

    def double_quoted(self) -> str:
        start_row = self.row
        parts: list[str] = []
        col = self.col + 1
        while True:
            line = self.lines[self.row]
            length = len(line)
            chunk_start = col
            while col < length:
                c = line[col]
                if c == '"':
                    parts.append(line[chunk_start:col])
                    self.col = col + 1
                    return "".join(parts)
                if c == "\\":
                    parts.append(line[chunk_start:col])
                    if col + 1 == length:
                        # Escaped line break: join the next line without a space.
                        self.row += 1
                        if self.row >= self.n:
                            raise YamlError("unterminated double-quoted scalar", start_row + 1)
                        next_line = self.lines[self.row]
                        col = len(next_line) - len(next_line.lstrip(" \t"))
                        chunk_start = col
                        break
                    col = self.escape(line, col + 1, parts)
                    chunk_start = col
                    continue
                col += 1
            else:
                parts.append(line[chunk_start:].rstrip(" "))
                col = self.fold_quoted_break(parts, start_row)

    def escape(self, line: str, col: int, parts: list[str]) -> int:
        code = line[col]
        simple = _ESCAPES.get(code)
        if simple is not None:
            parts.append(simple)
            return col + 1
        width = _HEX_ESCAPES.get(code)
        if width is None:
            raise self.error(f"unknown escape '\\{code}' in a double-quoted scalar")
        digits = line[col + 1 : col + 1 + width]
        if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.error(f"bad '\\{code}' escape in a double-quoted scalar")
        parts.append(chr(int(digits, 16)))
        return col + 1 + width

    def fold_quoted_break(self, parts: list[str], start_row: int) -> int:
        """A line break inside quotes: one break folds to a space, each blank line is a newline."""
        blank = 0
        while True:
            self.row += 1
            if self.row >= self.n:
                raise YamlError("unterminated quoted scalar", start_row + 1)
            line = self.lines[self.row]
            content = line.lstrip(" \t")
            if content:
                break
            blank += 1
        if self.row < self.n and self.lines[self.row].startswith(("---", "...")):
            raise YamlError("document marker inside a quoted scalar", self.row + 1)
        parts.append("\n" * blank if blank else " ")
        line = self.lines[self.row]
        return len(line) - len(line.lstrip(" \t"))

    # -- flow context ---------------------------------------------------------------------------

    def skip_flow_space(self) -> None:
        while self.row < self.n:
            line = self.lines[self.row]
            col = self.col
            while col < len(line) and line[col] in " \t":
                col += 1
            if col < len(line) and line[col] != "#":
                self.col = col
                return
            self.row += 1
            self.col = 0
        raise YamlError("unterminated flow collection", self.n)

    def flow_node(self) -> object:
        self.skip_flow_space()
        char = self.lines[self.row][self.col]
        if char == "{":
            return self.flow_mapping()
        if char == "[":
            return self.flow_sequence()
        if char in "&*":
            raise self.refused()
        if char in "!|>?%@`":
            raise self.unsupported(f"'{char}' in a flow collection")
        self.no_block_entry()
        token = self.scalar_token(block=False)
        if not token[1] and token[0] == "":
            raise self.error(f"unexpected '{char}' in a flow collection")
        return self.flow_scalar(token)

    def no_block_entry(self) -> None:
        """`- ` is a block sequence entry, which a flow collection cannot hold."""
        line, col = self.lines[self.row], self.col
        if line[col] == "-" and (col + 1 == len(line) or line[col + 1] == " "):
            raise self.error("a block sequence entry inside a flow collection")

    def flow_scalar(self, token: tuple[object, bool]) -> object:
        """A plain scalar in a flow collection may continue on the next lines."""
        text, quoted = token
        if quoted:
            return text
        assert isinstance(text, str)
        start_row = self.row
        pieces = [text]
        while True:
            line = self.lines[self.row]
            if self.col < len(line) and line[self.col] != "#":
                break
            probe_row = self.row + 1
            while probe_row < self.n and not self.lines[probe_row].strip(" \t"):
                probe_row += 1
            if probe_row >= self.n:
                break
            next_line = self.lines[probe_row]
            content = next_line.lstrip(" \t")
            if content[0] in _FLOW_INDICATORS or content[0] == "#":
                break
            if content[0] == ":" and (len(content) == 1 or content[1] in " ,]}"):
                break
            blank = probe_row - self.row - 1
            self.row = probe_row
            self.col = len(next_line) - len(content)
            more, _ = self.scalar_token(block=False)
            assert isinstance(more, str)
            pieces.append("\n" * blank if blank else " ")
            pieces.append(more)
        if len(pieces) == 1:
            return _resolve_plain(text, start_row + 1)
        return "".join(pieces)

    def flow_mapping(self) -> dict[object, object]:
        result: dict[object, object] = {}
        self.col += 1
        while True:
            self.skip_flow_space()
            line = self.lines[self.row]
            char = line[self.col]
            if char == "}":
                self.col += 1
                return result
            if char in "[{":
                raise self.unsupported("a flow collection used as a mapping key")
            if char in "&*":
                raise self.refused()
            if char in "!|>?%@`":
                raise self.unsupported(f"'{char}' in a flow mapping")
            if char == ",":
                raise self.error("empty entry in a flow mapping")
            self.no_block_entry()
            start_row = self.row
            key_token = self.scalar_token(block=False)
            if key_token == ("", False):
                raise self.error("a mapping entry without a key")
            key = self.flow_scalar(key_token)
            if isinstance(key, list | dict):
                raise self.unsupported("complex mapping key")
            if self.row != start_row:
                raise self.error("a mapping key must fit on one line")
            self.skip_flow_space()
            line = self.lines[self.row]
            if line[self.col] == ":":
                if self.row != start_row:
                    raise self.error("':' must be on the line of its key")
                self.col += 1
                self.skip_flow_space()
                line = self.lines[self.row]
                if line[self.col] in ",}":
                    value: object = None
                else:
                    value = self.flow_node()
            elif line[self.col] in ",}":
                value = None
            else:
                raise self.error("expected ':' in a flow mapping")
            if key in result:
                raise self.error(f"duplicate key {quoted(key)}")
            result[key] = value
            self.skip_flow_space()
            line = self.lines[self.row]
            if line[self.col] == ",":
                self.col += 1
            elif line[self.col] != "}":
                raise self.error("expected ',' or '}' in a flow mapping")

    def flow_sequence(self) -> list[object]:
        result: list[object] = []
        self.col += 1
        while True:
            self.skip_flow_space()
            line = self.lines[self.row]
            char = line[self.col]
            if char == "]":
                self.col += 1
                return result
            if char == ",":
                raise self.error("empty entry in a flow sequence")
            item = self.flow_node()
            self.skip_flow_space()
            line = self.lines[self.row]
            if line[self.col] == ":":
                raise self.unsupported("single-pair mappings inside a flow sequence")
            result.append(item)
            if line[self.col] == ",":
                self.col += 1
            elif line[self.col] != "]":
                raise self.error("expected ',' or ']' in a flow sequence")
