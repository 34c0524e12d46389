"""Every page in headless Chromium at 1280x800 on a folder of one's own with real, long class names
("ankle_boot", "t-shirt_top"): no text cut (cards, buttons, select boxes), no request to any host but the app's
own, and the gallery's hover preview off the bulk-action bar after a shift-click."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from csl_core.config import TrainConfig
from csl_core.engine.train import train
from tests.support.browser import CUT_TEXT, same_origin
from tests.support.long_names import LONG_CLASS_NAMES, write_long_names_folder

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]

# Each page of the menu and what shows once it has drawn.
PAGES = [("Run", "What next"), ("Trajectories", "Samples per side"), ("Galleries", "Hardest: highest"),
         ("Review queue", "Undo last action"), ("Focused review", "Keys:"), ("Class pairs", "Untick any"),
         ("Duplicates", "Undo last duplicates action"), ("Export", "Download CSV"), ("Evaluate", "Errors to find"),
         ("Memorisation", "no memorisation estimate yet"), ("Help", "Quick start")]


class _StopAfter:
    """Training callbacks that stop after ``epochs`` epochs: a run a person stopped, to Resume."""

    def __init__(self, epochs: int):
        self.epochs, self.done = epochs, 0

    def on_start(self, info): pass
    def on_batch(self, epoch, batch, batches): pass

    def on_epoch(self, epoch, summary):
        self.done = epoch + 1

    def should_stop(self):
        return self.done >= self.epochs


@pytest.fixture(scope="session")
def long_names_runs(tmp_path_factory) -> Path:
    """A runs folder: ``clothes`` (finished, 10% of labels flipped so suggestions differ) and
    ``clothes-stopped`` (stopped after 2 of 4 epochs), both on a 300-image folder with real class names."""
    tmp = tmp_path_factory.mktemp("long-names")
    root = write_long_names_folder(tmp / "photos", per_class=30)
    config = TrainConfig.for_source(f"imagefolder:{root}", epochs=4, inject_noise=0.1, device="cpu", seed=0)
    train(config, tmp / "runs" / "clothes")
    train(config, tmp / "runs" / "clothes-stopped", callbacks=_StopAfter(2))
    return tmp / "runs"


@pytest.fixture()
def browser(chromium):
    return chromium


def _boxes_overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_every_page_with_real_class_names_reads_in_full_and_stays_local(long_names_runs, browser, tmp_path,
                                                                        serve_dashboard):
    from playwright.sync_api import expect

    with serve_dashboard(tmp_path, long_names_runs) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("websocket", lambda w: requests.append(w.url))
        page.goto(f"{url}/?run={long_names_runs / 'clothes'}")
        page.get_by_text("Open run").wait_for(timeout=TIMEOUT_MS)
        cut: dict[str, list[str]] = {}
        for link, ready in PAGES:
            page.get_by_role("link", name=link, exact=True).click()
            page.get_by_text(ready).first.wait_for(timeout=TIMEOUT_MS)
            page.wait_for_load_state("networkidle")
            time.sleep(0.5)   # the components draw after their data arrives
            if link in ("Galleries", "Class pairs"):   # the cards are there, with their captions
                page.locator("[data-testid='grid-card']").first.wait_for(timeout=TIMEOUT_MS)
                captions = page.locator("[data-testid='grid-card'] .meta").all_inner_texts()
                assert any(name in text for text in captions for name in LONG_CLASS_NAMES), captions
            page.screenshot(path=str(tmp_path / f"{link}.png"))
            cut[link] = page.evaluate(CUT_TEXT)
        assert {link: texts for link, texts in cut.items() if texts} == {}

        # A card's suggestion, what its accept icon applies, reads in full with its probability.
        page.get_by_role("link", name="Class pairs", exact=True).click()
        card = page.locator("[data-testid='grid-card']").first
        card.wait_for(timeout=TIMEOUT_MS)
        assert re.search(r"→ \S+ \d+%", card.locator(".meta").inner_text()), card.locator(".meta").inner_text()

        # Galleries: select three by click and shift-click; the hover preview leaves the bulk actions free.
        page.get_by_role("link", name="Galleries", exact=True).click()
        page.get_by_text("Hardest: highest").wait_for(timeout=TIMEOUT_MS)
        grid = page.locator("[data-testid='thumbnail-grid']").nth(1)
        cards = grid.locator("[data-testid='grid-card']")
        cards.nth(3).wait_for(timeout=TIMEOUT_MS)
        cards.nth(0).locator(".thumb").click()
        thumb = cards.nth(2).locator(".thumb")
        thumb.click(modifiers=["Shift"])
        expect(grid.locator("[data-testid='grid-card'].selected")).to_have_count(3)
        box = thumb.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2 + 3, box["y"] + box["height"] / 2 + 3)   # the hand rests
        time.sleep(0.3)
        preview, bar = grid.locator(".preview"), grid.locator(".bar")
        assert not preview.is_visible()   # the hand has not moved since the click: nothing pops up
        other = cards.nth(3).locator(".thumb")   # moving on to another image shows it large, still off the bar
        other.hover()
        expect(preview).to_be_visible()
        assert not _boxes_overlap(preview.bounding_box(), bar.bounding_box())
        page.screenshot(path=str(tmp_path / "preview.png"))

        # Focused review at 1280x800: what the last key did, how many are decided and where the likely
        # mislabeled ones end are all above the fold.
        page.get_by_role("link", name="Focused review", exact=True).click()
        view = page.locator("[data-testid='focus-view']")
        view.locator("img.big").wait_for(timeout=TIMEOUT_MS)
        page.keyboard.press("k")
        expect(view.locator(".status")).to_contain_text("kept")
        expect(view.locator(".where")).to_contain_text("1 decided")
        expect(view.locator(".likely")).to_contain_text("mislabeled")
        for line in (".status", ".where", ".likely"):
            box = view.locator(line).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 800, (line, box)
        page.keyboard.press("u")
        expect(view.locator(".status")).to_contain_text("undid: kept")
        expect(view.locator(".where")).to_contain_text("0 decided")

        # A stopped run, opened from its address: its Resume button reads in full.
        page.goto(f"{url}/?run={long_names_runs / 'clothes-stopped'}")
        page.get_by_role("button", name=re.compile("Resume")).wait_for(timeout=TIMEOUT_MS)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(CUT_TEXT) == []

        elsewhere = sorted({u for u in requests if not same_origin(u, url)})
        assert elsewhere == [], f"the app fetched from other hosts: {elsewhere}"
        assert any(u.startswith(url) for u in requests)


def _serve(command: list[str], runs: Path, log: Path):
    """Start ``command`` (a dashboard server) and return it with its URL once it answers."""
    import os
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*command, "--server.headless", "true", "--server.port", str(port)],
                              env={**os.environ, "CSL_RUNS_DIR": str(runs)}, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            assert server.poll() is None, log.read_text()
            time.sleep(0.3)
    server.kill()
    raise AssertionError(f"the dashboard did not start: {log.read_text()}")


def test_a_bookmark_to_a_page_opens_it_right_after_a_start(long_names_runs, browser, tmp_path):
    """The first page a fresh `csl-clean app` serves, opened by its address (a bookmark, a reload after a
    restart), is that page, without a "Page not found" notice."""
    import sys

    server, url = _serve([sys.executable, "-m", "csl_core", "app"], long_names_runs, tmp_path / "app.log")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/focused-review?run={long_names_runs / 'clothes'}")
        page.locator("[data-testid='focus-view'] img.big").wait_for(timeout=TIMEOUT_MS)
        assert page.get_by_text("Page not found").count() == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
