"""The library's shape, as docs/architecture.md draws it: small modules, layers that import only downward,
no import cycle, no Streamlit under csl_core/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csl_core"
MAX_LINES = 400
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
    long = {name: n for name, f in MODULES.items() if (n := len(f.read_text().splitlines())) > MAX_LINES}
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
    crossing = [f"{name}: {node.module or '.'} {alias.name}" for name, file in MODULES.items()
                for node in ast.walk(ast.parse(file.read_text())) if isinstance(node, ast.ImportFrom)
                and (node.level or (node.module or "").startswith("csl_core"))
                for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, f"private names imported from another module: {crossing}"
