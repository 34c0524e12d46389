"""The package: every imported package is declared in pyproject.toml, and ``pip install -e .`` in a fresh
virtual environment gives a working ``csl-clean`` (console script, commands, and the dashboard it starts)."""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"csl_core", "pages", "app", "csl_clean_app"}
# Imported only as the first choice of a fallback: `lightning.pytorch`, else the declared `pytorch_lightning`.
ALTERNATIVES = {"lightning"}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_normalise(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]) for r in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, Path]:
    """Top-level module of every import in the package, the dashboard and the examples, with a file using it."""
    files = [*ROOT.joinpath("csl_core").rglob("*.py"), *ROOT.joinpath("pages").glob("*.py"), ROOT / "app.py",
             *ROOT.joinpath("examples").glob("*.py")]
    found: dict[str, Path] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], file)
    return found


def test_every_imported_package_is_declared():
    distributions = importlib.metadata.packages_distributions()
    wanted = declared()
    undeclared = []
    for module, file in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in FIRST_PARTY or module in ALTERNATIVES:
            continue
        providers = {_normalise(d) for d in distributions.get(module, [module])}
        if not providers & wanted:
            undeclared.append(f"{module} (imported in {file.relative_to(ROOT)}; from {sorted(providers)})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert "scipy" in wanted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_editable_install_in_a_fresh_venv_gives_a_working_csl_clean(tmp_path, demo_run):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"                     # a copy: installing writes build metadata beside the code
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "runs", ".git")
    for item in ("pyproject.toml", "README.md", "app.py", "csl_core", "pages"):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy2
        copy(ROOT / item, source / item, **({"ignore": ignore} if (ROOT / item).is_dir() else {}))
    venv = tmp_path / "venv"
    # The venv sees this interpreter's packages (no second torch); pip and setuptools come from there too.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    csl_clean = venv / "bin" / "csl-clean"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(csl_clean), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)

    helped = run("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: csl-clean")
    assert "import" in helped.stdout and "export" in helped.stdout and "app" in helped.stdout
    info = run("info", str(demo_run))
    assert info.returncode == 0 and "AUROC      csl" in info.stdout, info.stderr
    where = subprocess.run([str(python), "-c", "import csl_core, csl_core.cli.interop as c; print(csl_core.__file__); "
                            "print(c.app_path())"], cwd=elsewhere, env=env, capture_output=True, text=True)
    module_file, app_file = where.stdout.split()
    assert Path(module_file).is_relative_to(source) and Path(app_file) == source / "app.py"

    port = _free_port()
    server = subprocess.Popen([str(csl_clean), "app", "--runs", str(demo_run.parent), "--server.headless", "true",
                               "--server.port", str(port)], cwd=elsewhere, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    assert response.read() == b"ok"
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
