"""The rollout option table is the single source of the rollout flags: every entry is an option of
`rollout plan` and `rollout run`, every one changes the spec, and no other option of theirs does."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from cli_commands import Command, commands
from interlock.cli.main import build_parser
from interlock.cli.rollout import spec_from_args
from interlock.rollout.options import OPTIONS, Option, apply_options
from interlock.rollout.spec import RolloutSpec

COMMANDS = ("plan", "run")
# What plan and run have besides the table: files, output and the run's own choices. None of
# them is a spec field; a flag that changes the spec belongs in the table.
NOT_IN_TABLE = {
    "plan": {"-h", "--help", "-i", "--inventory", "--spec", "--json"},
    "run": {
        "-h",
        "--help",
        "-i",
        "--inventory",
        "--spec",
        "--journal",
        "--coordination",
        "--yes",
        "--events",
        "--log",
        "--metrics",
        "--no-progress",
        "--json",
        "--again",
    },
}


def rollout_command(name: str) -> Command:
    [command] = [c for c in commands(build_parser(("rollout",))) if c.path == ("rollout", name)]
    return command


def spec_of(name: str, words: Sequence[str]) -> RolloutSpec:
    """The spec `interlock rollout NAME WORDS…` would plan, through the real parser."""
    args = build_parser(("rollout",)).parse_args(["rollout", name, *words])
    spec: RolloutSpec = spec_from_args(args)
    return spec


def field_at(record: Any, path: Sequence[str]) -> Any:
    for name in path:
        record = getattr(record, name)
    return record


def replaced_at(record: Any, path: Sequence[str], value: object) -> Any:
    name, *inner = path
    if inner:
        value = replaced_at(getattr(record, name), inner, value)
    return dataclasses.replace(record, **{name: value})


@pytest.mark.parametrize("name", COMMANDS)
def test_the_table_is_every_spec_option_of_the_command(name: str) -> None:
    arguments = rollout_command(name).parser._actions
    by_flag = {flag: action for action in arguments for flag in action.option_strings}
    for option in OPTIONS:
        for flag in option.flags:
            assert flag in by_flag, f"{flag} is not an option of `rollout {name}`"
            assert by_flag[flag].dest == option.dest
    in_table = {flag for option in OPTIONS for flag in option.flags}
    assert set(by_flag) - in_table == NOT_IN_TABLE[name]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("option", OPTIONS, ids=[option.flag for option in OPTIONS])
def test_every_option_changes_the_spec(name: str, option: Option) -> None:
    assert option.sample[0] in option.flags, "the sample gives the option itself"
    before = spec_of(name, option.needs)
    after = spec_of(name, [*option.needs, *option.sample])
    assert after != before
    if option.path:
        # It changes its own field and nothing else.
        assert field_at(after, option.path) != field_at(before, option.path)
        assert replaced_at(after, option.path, field_at(before, option.path)) == before
    if option.negative is not None:
        assert spec_of(name, [option.flag]) != spec_of(name, [option.negative])


def test_a_flag_that_is_not_in_the_table_is_refused() -> None:
    with pytest.raises(KeyError, match="--gates"):
        apply_options(RolloutSpec(), {"--gates": ["http://{address}/"]})
