"""One count of wrong labels: every page and command asks `noise_count` (or `standing`, which calls it); none
computes another (the confident joint, the former weights, a sum of p_wrong of its own)."""
from __future__ import annotations

import ast

from tests.support import ROOT

OTHER_COUNTS = {"estimate_label_noise", "wrong_label_weights", "wrong_count", "estimate_with_answers"}


def _places():
    yield from sorted((ROOT / "pages").rglob("*.py"))
    yield from sorted((ROOT / "csl_core" / "cli").rglob("*.py"))
    yield from sorted((ROOT / "csl_core" / "run").rglob("*.py"))
    yield ROOT / "app.py"


def test_no_page_or_command_computes_a_count_of_its_own():
    offences = []
    for path in _places():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                # a sum over p_wrong: scores["p_wrong"].sum() / np.sum(...p_wrong...)
                if name == "sum" and "p_wrong" in ast.unparse(node):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in OTHER_COUNTS:
                        offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {alias.name}")
            if name in OTHER_COUNTS:
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: calls {name}")
    assert offences == []


def test_the_count_is_asked_for_where_a_person_reads_it():
    asking = {path.relative_to(ROOT).as_posix() for path in _places() if "noise_count" in path.read_text()
              or "standing(" in path.read_text() or "suggested_cleaning" in path.read_text()}
    assert {"csl_core/cli/runs.py", "pages/run.py", "pages/export.py", "csl_core/cli/audit.py"} <= asking
