"""Where things go, as docs/architecture.md says, checked: the test tree mirrors the package, no test module
imports another (shared things are conftest fixtures or tests/support), every page is registered in app.py."""
from __future__ import annotations

import ast
import re

from tests.support import ROOT

TESTS = ROOT / "tests"
# Beside the library's own packages: the dashboard (pages: AppTest; browser: Chromium), the scripts, and the
# shared helpers that are not tests.
BESIDE_THE_PACKAGE = {"pages", "browser", "scripts", "support"}


def test_the_test_tree_mirrors_the_package():
    packages = {p.name for p in (ROOT / "csl_core").iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= packages | BESIDE_THE_PACKAGE, folders - packages - BESIDE_THE_PACKAGE
    loose = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert loose == ["test_layers.py", "test_package.py", "test_tree.py"]   # the project as a whole


def test_test_module_names_are_unique_and_say_what_they_test():
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), "pytest imports test modules by name: keep each basename unique"
    assert not [n for n in names if re.search(r"round|hardening|_\d+\.py$", n)], "name a test file by its subject"


def test_no_test_module_imports_another():
    wrong = []
    for file in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{file.relative_to(ROOT)}: {m}" for m in modules
                      if re.search(r"(^|\.)(test_\w+|conftest)$", m)]
    assert not wrong, "share through a conftest fixture or tests/support"


def test_every_page_is_registered_in_the_app():
    app = (ROOT / "app.py").read_text()
    pages = sorted(p.name for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
    assert [p for p in pages if f'"pages/{p}"' not in app] == []


def test_no_machine_path_in_the_package():
    """Data lives where a person says (an option, an environment variable), never at a path of one machine;
    a system package's own location (Debian's /usr/share) is the one kind of fixed path."""
    machine = ("/work", "/home", "/root", "/tmp", "/mnt", "/data", "/scratch", "/Users")
    found = [f"{file.relative_to(ROOT)}:{node.lineno}: {node.value}"
             for file in (ROOT / "csl_core").rglob("*.py")
             for node in ast.walk(ast.parse(file.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(machine)]
    assert not found
