"""The real thing in headless Chromium: serve the app, start the demo, wait for the gallery, screenshot."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
TRAINING_TIMEOUT_MS = 240_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def served_app(tmp_path):
    """``streamlit run app.py`` on a free localhost port, with its own empty runs folder."""
    port = _free_port()
    env = {**os.environ, "CSL_RUNS_DIR": str(tmp_path / "runs")}
    log = open(tmp_path / "streamlit.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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


def test_start_the_demo_and_see_the_gallery(served_app, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(served_app)
            epochs = page.get_by_role("spinbutton", name="Epochs")
            epochs.wait_for(timeout=60_000)
            epochs.fill("1")
            epochs.press("Enter")
            page.get_by_role("button", name=re.compile("Start")).click()
            page.get_by_text(re.compile(r"finished · epoch 1/1")).first.wait_for(timeout=TRAINING_TIMEOUT_MS)
            page.get_by_text("Open run").wait_for(timeout=60_000)   # the router's menu is in place
            page.get_by_role("link", name="Galleries", exact=True).click()
            page.get_by_text("Hardest: highest CSL").wait_for(timeout=60_000)
            images = page.locator("[data-testid='stImage'] img")
            images.nth(17).wait_for(timeout=60_000)
            assert images.count() == 18
            page.wait_for_load_state("networkidle")
            shot = tmp_path / "gallery.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert page.locator("[data-testid='stException']").count() == 0
        finally:
            browser.close()
