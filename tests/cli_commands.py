"""Every command of `interlock`, found in its argparse parser, so new commands are covered."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from interlock.cli.main import build_parser


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def arguments(self) -> list[argparse.Action]:
        """Its own options and positionals, without --help."""
        return [a for a in self.parser._actions if not isinstance(a, argparse._HelpAction)]


def commands(parser: argparse.ArgumentParser | None = None) -> list[Command]:
    return list(_walk(parser or build_parser(), ()))


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[Command]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield Command(path, parser)
        return
    for group in groups:
        for name, child in group.choices.items():
            yield from _walk(child, (*path, name))
