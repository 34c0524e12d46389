"""Shared fixtures. ``demo_run`` trains one small demo run per test session; reuse it, never write to it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from csl_core.engine.train import TrainConfig, train
from csl_core.run.store import RunStore
from tests.support import ROOT

DEMO_EPOCHS = 4

# The tests train on tiny data, where a second thread gains nothing and, on a shared 2-core machine,
# waits at every parallel region for a descheduled sibling: one thread keeps the suite fast and steady.
torch.set_num_threads(1)


CHROMIUM = "/usr/bin/chromium"   # Debian's Chromium: the browser tests never download one of their own


@pytest.fixture()
def chromium():
    """Headless Chromium driven by Playwright, closed after the test; the test is skipped where Playwright or
    Debian's Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs a page as ``__main__`` in this process and leaves it there; a process pool
    started later (spawn) would then run that page in every worker. Each test gets the real one back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A finished run folder: the demo (digits, 5% injected noise, duplicate pairs), 4 epochs, seed 0."""
    out = tmp_path_factory.mktemp("demo-run") / "demo"
    train(TrainConfig(data="demo", epochs=DEMO_EPOCHS, device="cpu"), out)
    return out




@pytest.fixture()
def demo_copy(runs_dir, copy_demo) -> Path:
    """A copy of the session's demo run that the test may write to, listed in the dashboard's runs folder
    (``runs_dir/demo``)."""
    return copy_demo(runs_dir / "demo")


@pytest.fixture(scope="session")
def copy_demo(demo_run):
    """``copy_demo(path)``: a copy of the session's demo run at ``path`` (anywhere: outside the runs folder,
    a second run beside the first); returns ``path``."""
    return lambda path: Path(shutil.copytree(demo_run, path))


def build_run(path: Path, *, n: int = 6, classes=("a", "b"), labels=None, id_format: str = "s{}", paths=None,
              epochs: int = 2, finished: int | None = None, config: dict | None = {"data": "demo"},  # noqa: B006
              loss=None, epoch_record=None, probabilities=None, image_index: bool = True) -> RunStore:
    """A run folder built by hand, without training: ``n`` samples (ids ``id_format.format(i)``, or the files
    ``paths``), labels ``i % len(classes)`` unless given, ``epochs`` planned and ``finished`` (all by default)
    written: loss ``1 + epoch`` for every sample unless ``loss(epoch)`` says otherwise, the other fields
    neutral unless ``epoch_record(epoch)`` gives some; ``probabilities`` go with every epoch written."""
    if paths is not None:
        n = len(paths)
    labels = np.asarray(labels if labels is not None else np.arange(n) % len(classes))
    samples = pd.DataFrame({"index": range(n),
                            "sample_id": list(paths) if paths is not None else [id_format.format(i) for i in range(n)],
                            "label": labels, "class_name": [classes[c] for c in labels]})
    if image_index:
        samples["image_index"] = range(n)
    if paths is not None:
        samples["path"] = list(paths)
    meta = {"classes": list(classes), "source": "test", **({"config": config} if config is not None else {})}
    store = RunStore.create(path, meta=meta, samples=samples, epochs=epochs)
    for epoch in range(epochs if finished is None else finished):
        record = {"loss": np.full(n, 1.0 + epoch, np.float32) if loss is None else np.asarray(loss(epoch), np.float32),
                  "correct": np.ones(n, bool), "margin": np.zeros(n, np.float32),
                  "p_given": np.full(n, .5, np.float32), "p_max": np.full(n, .5, np.float32),
                  **(epoch_record(epoch) if epoch_record else {})}
        store.write_epoch(epoch, record, probabilities=probabilities)
    return store


@pytest.fixture()
def make_run():
    """The one run builder (:func:`build_run`): ``make_run(tmp_path / "run", n=..., epochs=..., ...)``."""
    return build_run


def _open_app(**query):
    """``app.py`` run once in Streamlit's AppTest (no browser), with ``query`` as the address's parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


@pytest.fixture()
def open_app():
    """The one app launcher for page tests: ``at = open_app(run=str(path))``."""
    return _open_app


@contextmanager
def _serve_dashboard(tmp_path: Path, runs: Path):
    """``streamlit run app.py`` on a free localhost port over the runs folder ``runs``; yields its URL once
    it answers its health check, and stops it afterwards. Its output goes to ``tmp_path/streamlit.log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "streamlit.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "CSL_RUNS_DIR": str(runs)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture()
def serve_dashboard():
    """The dashboard server for browser tests: ``with serve_dashboard(tmp_path, runs) as url``."""
    return _serve_dashboard


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder that the dashboard lists (``CSL_RUNS_DIR``), for page tests."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("CSL_RUNS_DIR", str(root))
    return root


@pytest.fixture()
def no_magic():
    """Pages never rely on Streamlit's "magic"; without it a rerun compiles the page without ``ast.parse``,
    which CPython 3.11 before 3.11.8 can get wrong while another thread parses too (gh-106905). For tests
    that train in a background thread while AppTest reruns a page."""
    from streamlit import config

    config.set_option("runner.magicEnabled", False)
    yield
    config.set_option("runner.magicEnabled", True)
