"""One command is one object (``cli.parser.COMMANDS``): its options and the function that runs it, tied here, so
that a command cannot be parsed without running or run without being parsed."""
from __future__ import annotations

import argparse
import ast
import importlib

import pytest

from csl_core.cli import COMMANDS, build_parser
from tests.support import ROOT


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return list(action.choices)


def test_the_command_line_parses_exactly_the_commands_of_the_table():
    assert _subcommands(build_parser()) == list(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_adds_its_own_subparser_and_names_a_function_that_runs_it(name):
    command = COMMANDS[name]
    parser = argparse.ArgumentParser()
    command.add(parser.add_subparsers(dest="command"))
    assert _subcommands(parser) == [name]
    function = getattr(importlib.import_module(f"csl_core.cli.{command.module}"), command.function)
    assert callable(function)


def test_every_command_function_is_run_by_exactly_one_command():
    defined = {(file.stem, node.name) for file in (ROOT / "csl_core" / "cli").glob("*.py")
               for node in ast.parse(file.read_text()).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_")}
    run = [(command.module, command.function) for command in COMMANDS.values()]
    assert sorted(run) == sorted(defined)
