"""Errors a person reads are CSLErrors; the command line and the pages catch those (and the file system's own
errors, which name the path), never the builtins a bug raises, so a bug shows its traceback and where to
report it."""
from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from csl_core import errors
from csl_core.cli import main
from tests.support import ROOT

FILES = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py")), *sorted((ROOT / "csl_core" / "cli").glob("*.py"))]
PERSON = {name for name in dir(errors) if isinstance(getattr(errors, name), type)
          and issubclass(getattr(errors, name), errors.CSLError)}
# The file system's errors (their message names the path), an interrupt, an optional package missing.
ALLOWED = {"OSError", "FileNotFoundError", "PermissionError", "IsADirectoryError", "NotADirectoryError",
           "FileExistsError", "KeyboardInterrupt", "ImportError", "ModuleNotFoundError"}
# Builtins caught around a standard-library call of the file's own (never a csl_core call), with why.
LOCAL = {
    ("app.py", "Exception"): "the last resort: show_failure tells a CSLError from a bug (traceback shown)",
    ("pages/_grid.py", "TypeError"): "int() of the indices the grid component sent",
    ("pages/_grid.py", "ValueError"): "int() of the indices the grid component sent",
    ("pages/focus.py", "KeyError"): "the fields of the event the review component sent",
    ("pages/focus.py", "TypeError"): "the fields of the event the review component sent",
    ("pages/focus.py", "ValueError"): "int() of the event the review component sent",
    ("pages/focus.py", "AttributeError"): "an event that is not a mapping",
    ("pages/_common.py", "KeyError"): "Path.owner(): a uid without a user name",
    ("pages/_filters.py", "ValueError"): "os.path.commonpath of paths on different drives",
    ("pages/help.py", "ValueError"): "Path.relative_to: a link that leaves the documentation",
    ("pages/_sidebar.py", "ValueError"): "Path.resolve of an address with a NUL byte",
    ("csl_core/cli/parser.py", "ValueError"): "int() of an option's text, said by argparse",
    ("csl_core/cli/__init__.py", "Exception"): "a bug: its traceback is printed with where to report it",
}


def _caught(file: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ExceptHandler):
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type] if node.type else []
            found += [(node.lineno, ast.unparse(t).rsplit(".", 1)[-1]) for t in types]
            if node.type is None:
                found.append((node.lineno, "BaseException"))
    return found


@pytest.mark.parametrize("file", FILES, ids=lambda f: str(f.relative_to(ROOT)))
def test_the_command_line_and_the_pages_catch_only_what_a_person_can_act_on(file):
    where = str(file.relative_to(ROOT))
    wrong = [f"{where}:{line}: except {name}" for line, name in _caught(file)
             if name not in PERSON | ALLOWED and (where, name) not in LOCAL
             and (name in vars(builtins) or name in ("Exception", "BaseException"))]
    assert not wrong, "catch the CSLError the library raises for a person; a builtin is a bug's"


def test_a_bug_in_a_command_shows_its_traceback_and_where_to_report(monkeypatch, capsys):
    from csl_core import cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "command", lambda name: broken)
    assert main(["info", "anywhere"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and errors.REPORT_BUG in err


def test_a_person_s_error_in_a_command_is_one_line(monkeypatch, capsys):
    from csl_core import cli

    def refused(args):
        raise errors.InputError("--top must be positive")

    monkeypatch.setattr(cli, "command", lambda name: refused)
    assert main(["info", "anywhere"]) == 2
    assert capsys.readouterr().err == "error: --top must be positive\n"


def test_the_pages_raise_only_what_they_catch():
    """A page's own message for a person is an InputError, which its handler (CSLError) catches."""
    raised = [f"{file.relative_to(ROOT)}:{node.lineno}" for file in FILES if file.is_relative_to(ROOT / "pages")
              for node in ast.walk(ast.parse(file.read_text()))
              if isinstance(node, ast.Raise) and node.exc is not None and isinstance(node.exc, ast.Call)
              and ast.unparse(node.exc.func) in vars(builtins)]
    assert not raised
