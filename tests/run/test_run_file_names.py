"""Every name of a run folder is spelled once, in run/layout.py: no other module of the library or the dashboard
writes "meta.json", "estimate.parquet" or a path joined with "arrays" itself, and no module gives a run file a
second name."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from csl_core.run import layout
from csl_core.run.layout import RUN_FILES
from tests.support import ROOT

SOURCES = [f for f in [*sorted((ROOT / "csl_core").rglob("*.py")), *sorted((ROOT / "pages").rglob("*.py"))]
           if f != ROOT / "csl_core" / "run" / "layout.py"]
# Every file name of the table ("meta.json", "estimate.parquet", "model-<model>.npz" as "model-"), and every
# folder of it ("arrays", "models", "memorization", "export").
FILE_NAMES = {stem for name in RUN_FILES if "." in name
              if len(stem := re.split(r"<", name.rstrip("/").rsplit("/", 1)[-1])[0]) > 3}
FOLDERS = {part for name in RUN_FILES for part in name.rstrip("/").split("/")[:-1]} | {
    name.rstrip("/") for name in RUN_FILES if name.endswith("/")} | {layout.ARRAYS}


def _spelled(file: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if not re.search(r"\s", text):   # a name or a path, not a sentence that mentions one
                found += [f"{file.relative_to(ROOT)}:{node.lineno}: {text!r}" for name in FILE_NAMES
                          if re.search(rf"(^|/){re.escape(name)}", text)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value in FOLDERS:     # path / "arrays": a run folder's name joined by hand
            found.append(f"{file.relative_to(ROOT)}:{node.lineno}: / {node.right.value!r}")
    return found


@pytest.mark.parametrize("file", SOURCES, ids=lambda f: str(f.relative_to(ROOT)))
def test_no_module_spells_a_run_folder_name(file):
    assert not _spelled(file), "name run files through csl_core/run/layout.py"


def test_no_run_file_has_a_second_name():
    """``NEIGHBOURS_FILE = NEIGHBOURS``: a second constant for a layout name, in any module."""
    names = {name for name in dir(layout) if name.isupper() and isinstance(getattr(layout, name), str)}
    aliases = []
    for file in SOURCES:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in names:
                aliases += [f"{file.relative_to(ROOT)}: {ast.unparse(t)} = {node.value.id}" for t in node.targets]
    assert not aliases
