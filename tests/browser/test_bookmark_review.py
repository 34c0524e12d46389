"""#31 in headless Chromium at 1280x800: a bookmark to Focused review, opened after the server restarted, takes
decisions by keyboard into the run's decision log, and counts the run's decisions with the queue's progress
beside them; on a read-only run the keys decide nothing, do not advance, and the page says why and what to do."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from csl_core.analysis.scores import default_score, suspicion
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]

# The dashboard as `csl-clean app` runs it (csl_core/cli/interop.py), with the folder CSL_TEST_READ_ONLY (when
# set) not writable by the server, as a folder of another user would be (the tests run as root: they write anywhere).
LAUNCH = """
import os, sys
read_only = os.environ.get("CSL_TEST_READ_ONLY")
if read_only:
    real = os.access
    os.access = lambda p, mode, **kw: False if mode & os.W_OK and str(p).startswith(read_only) else real(p, mode, **kw)
from streamlit.runtime.pages_manager import PagesManager
PagesManager.uses_pages_directory = False
from streamlit.web.cli import main
sys.argv = ["streamlit", "run", "app.py", *sys.argv[1:]]
main()
"""


@contextmanager
def dashboard(runs: Path, log: Path, read_only: Path | None = None):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CSL_RUNS_DIR": str(runs), "CSL_TEST_READ_ONLY": str(read_only or "")}
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def effective_actions(run: Path) -> np.ndarray:
    store = RunStore(run)
    return DecisionLog(run).effective(store.num_samples, store.samples()["label"])["action"].to_numpy()


def test_a_bookmark_after_a_restart_saves_decisions_by_keyboard(demo_run, chromium, tmp_path, copy_demo):
    from playwright.sync_api import expect

    runs = tmp_path / "runs"
    run = runs / "demo"
    copy_demo(run)
    store = RunStore(run)
    scores = store.scores()
    queue = np.argsort(-suspicion(scores, default_score(scores)), kind="stable")
    DecisionLog(run).record(queue[:3].tolist(), "keep", source="earlier")   # decided in an earlier sitting
    queue = queue[3:]                                                      # the default queue: undecided only
    bookmark = f"/focused-review?run={run}"
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    with dashboard(runs, tmp_path / "first.log") as url:
        page.goto(url + bookmark)
        page.locator("[data-testid='focus-view'] img.big").wait_for(timeout=TIMEOUT_MS)
    # The server restarts (its job registry is empty); the person opens the bookmark.
    with dashboard(runs, tmp_path / "second.log") as url:
        page.goto(url + bookmark)
        view = page.locator("[data-testid='focus-view']")
        image = view.locator("img.big")
        expect(image).to_have_attribute("data-index", str(queue[0]), timeout=TIMEOUT_MS)
        assert page.get_by_text("read-only").count() == 0 and page.get_by_text("Page not found").count() == 0
        expect(view.locator(".where")).to_contain_text(f"3 of {store.num_samples:,} decided in this run")
        expect(view.locator(".where")).to_contain_text(f"this queue: 1 of {len(queue):,}, 0 decided")
        page.keyboard.press("d")
        expect(image).to_have_attribute("data-index", str(queue[1]), timeout=5_000)
        expect(view.locator(".where")).to_contain_text(f"4 of {store.num_samples:,} decided in this run")
        expect(view.locator(".where")).to_contain_text(f"this queue: 2 of {len(queue):,}, 1 decided")
        page.screenshot(path=str(tmp_path / "bookmark.png"))
        deadline = time.monotonic() + 60
        while effective_actions(run)[queue[0]] != "drop" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert effective_actions(run)[queue[0]] == "drop"
        assert (effective_actions(run) != "undecided").sum() == 4


def test_on_a_read_only_run_the_keys_decide_nothing_and_the_page_says_why(demo_run, chromium, tmp_path, copy_demo):
    from playwright.sync_api import expect

    runs = tmp_path / "runs"
    run = runs / "demo"
    copy_demo(run)
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    with dashboard(runs, tmp_path / "server.log", read_only=run) as url:
        page.goto(f"{url}/focused-review?run={run}")
        view = page.locator("[data-testid='focus-view']")
        image = view.locator("img.big")
        image.wait_for(timeout=TIMEOUT_MS)
        first = image.get_attribute("data-index")
        warning = page.locator("[data-testid='stAlertContentWarning']")
        expect(warning).to_contain_text("read-only")
        expect(warning).to_contain_text(f"chmod -R u+w {run}")
        for key in ("k", "d", "3", "a", "u"):
            page.keyboard.press(key)
            expect(view.locator(".status")).to_contain_text("read-only")
            assert image.get_attribute("data-index") == first, key   # the key did not advance
        page.keyboard.press("ArrowRight")   # looking on is still possible
        expect(image).not_to_have_attribute("data-index", first, timeout=5_000)
        expect(view.locator(".where")).to_contain_text("0 of")
        page.screenshot(path=str(tmp_path / "read-only.png"))
    assert not (run / "decisions.sqlite").exists() or (effective_actions(run) == "undecided").all()
