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


def site_directories() -> list[str]:
    """The site-packages folders this interpreter imports from: a virtual environment's own, plus the base
    interpreter's only where that environment was made with ``--system-site-packages``."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def fresh_venv_seeing_these_packages(venv: Path) -> Path:
    """A new virtual environment, not made with ``--system-site-packages`` (which, from inside a venv, would
    expose the base interpreter's packages, not this environment's), that imports what this interpreter
    imports (no second torch) through a ``.pth`` file after its own, still empty, site-packages. Its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "_tested_environment.pth").write_text("\n".join(site_directories()) + "\n")
    return python


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def can_build_editable_wheels() -> bool:
    """Whether this environment's setuptools builds an editable wheel by itself: 70.1 carries ``bdist_wheel``;
    64 to 70.0 need the ``wheel`` package beside them. Python 3.11's ``venv`` brings setuptools 65 without it."""
    try:
        setuptools = _version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        return False
    if setuptools >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return setuptools >= (64,)


@pytest.mark.slow
def test_the_fresh_venv_sees_this_environment_not_the_base_interpreter(tmp_path):
    python = fresh_venv_seeing_these_packages(tmp_path / "venv")
    seen = subprocess.run([str(python), "-c", "import sys, torch, streamlit; print(sys.prefix); print(sys.path)"],
                          capture_output=True, text=True)
    assert seen.returncode == 0, seen.stderr[-2000:]
    prefix, path = seen.stdout.splitlines()
    assert Path(prefix) == tmp_path / "venv"
    base = [p for p in ast.literal_eval(path) if Path(p).name in ("site-packages", "dist-packages")
            and p not in site_directories() and not Path(p).is_relative_to(tmp_path)]
    assert base == [], f"the test venv imports from outside this environment: {base}"


@pytest.mark.slow
def test_editable_install_in_a_fresh_venv_gives_a_working_csl_clean(tmp_path, demo_run):
    pytest.importorskip("pip")
    source = tmp_path / "source"                     # a copy: installing writes build metadata beside the code
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "runs", ".git")
    for item in ("pyproject.toml", "README.md", "app.py", "csl_core", "pages"):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy2
        copy(ROOT / item, source / item, **({"ignore": ignore} if (ROOT / item).is_dir() else {}))
    venv = tmp_path / "venv"
    python = fresh_venv_seeing_these_packages(venv)
    # Build as pip would in the environment running these tests: with its own setuptools where that can build
    # an editable wheel (nothing fetched), else in pip's isolated build environment from the configured index,
    # the way `pip install -e .` just did. Never from the base interpreter's packages.
    isolation = ["--no-build-isolation"] if can_build_editable_wheels() else []
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *isolation, "-e", str(source)],
                          capture_output=True, text=True, timeout=300)
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
