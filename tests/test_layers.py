"""The project's shape, as docs/architecture.md draws it: small modules (the library, the dashboard and the
scripts), layers that import only downward, no import cycle, no Streamlit under csl_core/, pages that import
only the library and the dashboard's shared modules, no private name or attribute used across modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "csl_core"
MAX_LINES = 400
# The dashboard (app.py, pages/: each page a thin view, pages/_*.py shared by them) and the scripts sit on
# top of the library; each file is a module under the same size rule.
DASHBOARD = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py"))]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
# Bottom to top; a module may import its own layer and the layers below it. ``csl_core`` itself (the
# package's __init__: the version and the public names, loaded lazily) may be imported from anywhere.
LAYERS = ["errors", "progress", "data", "analysis", "config", "run", "engine", "integrations", "bench", "cli",
          "__main__"]


def _module_name(file: Path) -> str:
    parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(f): f for f in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every csl_core module ``name`` imports, at the top or inside a function."""
    file = MODULES[name]
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            # ``from . import x`` imports the submodule x where there is one
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found - {name}


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_module_is_over_the_size_limit():
    files = [*MODULES.values(), *DASHBOARD, *SCRIPTS]
    long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def test_every_module_belongs_to_a_known_layer():
    assert {_layer(name) for name in MODULES} - {None} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nothing_imports_upward(name):
    layer = _layer(name)
    if layer is None:
        return
    upward = {target for target in _imports(name)
              if _layer(target) is not None and LAYERS.index(_layer(target)) > LAYERS.index(layer)}
    assert not upward, f"{name} ({layer}) imports from layers above it: {sorted(upward)}"


def test_no_import_cycle():
    graph = {name: _imports(name) for name in MODULES}
    # Importing a submodule runs its package's __init__ first: that edge is not a dependency of the
    # package on itself, so a package -> submodule edge is only followed from outside the package.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if target.startswith(node + "."):
                continue  # a package re-exporting its own submodules
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_streamlit_under_csl_core():
    users = [name for name, file in MODULES.items()
             if any(isinstance(node, (ast.Import, ast.ImportFrom))
                    and any((alias.name if isinstance(node, ast.Import) else (node.module or "")).split(".")[0]
                            == "streamlit" for alias in node.names)
                    for node in ast.walk(ast.parse(file.read_text())))]
    assert not users, f"csl_core must not import streamlit: {users}"


def test_every_subpackage_says_what_its_layer_is():
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "layer" in doc.splitlines()[0].lower(), f"{package.name}/__init__.py: say the layer in line one"


def test_no_private_name_crosses_a_module():
    """A name with a leading underscore stays in its module: what another module needs is public."""
    crossing = [f"{file.relative_to(ROOT)}: {node.module or '.'} {alias.name}"
                for file in [*MODULES.values(), *DASHBOARD, *SCRIPTS]
                for node in ast.walk(ast.parse(file.read_text())) if isinstance(node, ast.ImportFrom)
                and (node.level or (node.module or "").startswith(("csl_core", "pages", "scripts")))
                for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, f"private names imported from another module: {crossing}"


def _top_imports(file: Path) -> set[str]:
    """The module names ``file`` imports (absolute imports, at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_library_imports_neither_the_dashboard_nor_the_scripts_nor_the_tests():
    upward = {name: sorted(t for t in _top_imports(file) if t.split(".")[0] in ("pages", "scripts", "tests", "app"))
              for name, file in MODULES.items()}
    assert not {k: v for k, v in upward.items() if v}


@pytest.mark.parametrize("file", DASHBOARD, ids=lambda f: str(f.relative_to(ROOT)))
def test_a_page_imports_the_library_and_the_shared_page_modules_only(file):
    """A page is a view: it imports csl_core and pages/_*.py (never another page, a script or a test)."""
    wrong = sorted(t for t in _top_imports(file)
                   if t.split(".")[0] in ("scripts", "tests", "app")
                   or (t.startswith("pages.") and not t.split(".")[1].startswith(("_", "components"))))
    assert not wrong, f"{file.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("file", SCRIPTS, ids=lambda f: f.name)
def test_a_script_imports_no_test(file):
    assert not [t for t in _top_imports(file) if t.split(".")[0] == "tests"]


# Private attributes of other libraries' objects that the code uses on purpose.
FOREIGN_PRIVATE = {"torch._assert_async",                       # the tracker's check without a host sync
                   "super()._set_signature_columns_if_needed"}  # the Hugging Face Trainer hook it overrides


def test_no_private_attribute_is_used_from_outside_its_object():
    """``obj._name`` only on ``self`` or ``cls``: what another module or object needs is public (the dashboard
    once reached into the job registry's ``_jobs``)."""
    reached = []
    for file in [*MODULES.values(), *DASHBOARD, *SCRIPTS]:
        for node in ast.walk(ast.parse(file.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and ast.unparse(node) not in FOREIGN_PRIVATE):
                reached.append(f"{file.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not reached, reached
