"""Every ``liaotian`` sub-command has a description and every argument a help text."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from liaotian.cli import build_parser


def parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-parser under it, with the command line that reaches it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_every_command_and_argument_has_help() -> None:
    """Walk the argparse tree: each parser has a description, each sub-command a help line
    in its parent's list, each argument (positional or option) a help text."""
    missing: list[str] = []
    for path, parser in parsers(build_parser(), "liaotian"):
        if not parser.description:
            missing.append(f"{path}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [f"{path} {name}: no help line" for name in action.choices
                            if not listed.get(name)]  # fmt: skip
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    assert missing == []


def test_the_walk_reaches_the_nested_commands() -> None:
    """The walk above sees the nested actions (so an empty result is not vacuous)."""
    paths = {path for path, _ in parsers(build_parser(), "liaotian")}
    assert {
        "liaotian serve",
        "liaotian user add",
        "liaotian token revoke",
        "liaotian models",
    } <= paths
