"""#31 (2) in headless Chromium at 1280x800: every page fits with the real Fashion-MNIST class names ("T-shirt/top",
"Ankle boot") and with 40-character class names and long paths. No text cut (tests/_page_checks.py); the tables'
columns hold their headers and values whole in the browser's own font, and a wide one scrolls sideways with its
first column fixed; paths shortened in the middle on one line, whole on hover; Help's links open in this tab;
Focused review shows which class each digit key relabels to."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csl_core.config import TrainConfig
from csl_core.engine.train import train
from csl_core.run.store import RunStore
from pages._layout import CELL_PADDING_PX, column_px
from tests.support.browser import CUT_TEXT

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 90_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]

BASE_NAMES = ["t-shirt_top_cotton_crew_neck", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
              "bag", "ankle_boot"]
LONG_NAMES = [(name + "_").ljust(39, "x") + str(c) for c, name in enumerate(BASE_NAMES)]   # 40 characters each
PAGES = [("Run", "What next"), ("Trajectories", "Samples per side"), ("Galleries", "Hardest: highest"),
         ("Review queue", "Undo last action"), ("Focused review", "Keys:"), ("Class pairs", "Untick any"),
         ("Duplicates", "Undo last duplicates action"), ("Export", "Download CSV"), ("Evaluate", "Errors to find"),
         ("Memorisation", "no memorisation estimate yet"), ("Help", "Quick start")]
WIDE_PAGES = ["Review queue", "Class pairs", "Duplicates", "Focused review"]

# Each table's columns (the grid's accessible copy of what it draws): the header and the values shown, and the
# widest of them in the grid's own font.
GRID_TEXTS = """async () => {
  await document.fonts.ready;
  const out = [];
  for (const frame of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    const style = getComputedStyle(frame.querySelector('.stDataFrameGlideDataEditor'));
    const context = document.createElement('canvas').getContext('2d');
    const font = (name) => style.getPropertyValue(name).trim() + ' ' + style.getPropertyValue('--gdg-font-family');
    const headers = [...frame.querySelectorAll('table[role=grid] th')].map((th) => th.textContent);
    const columns = headers.map((header) => ({header, values: [], widest: 0}));
    context.font = font('--gdg-header-font-style');
    columns.forEach((c) => { c.widest = context.measureText(c.header).width; });
    context.font = font('--gdg-base-font-style');
    for (const td of frame.querySelectorAll('table[role=grid] td')) {
      const column = columns[Number(td.getAttribute('aria-colindex')) - 1];
      if (!column || !td.textContent) continue;
      column.values.push(td.textContent);
      column.widest = Math.max(column.widest, context.measureText(td.textContent).width);
    }
    out.push(columns);
  }
  return out;
}"""


def _folder(root: Path) -> Path:
    """300 Fashion-MNIST images (or the digits) under 40-character class folders, in a folder of a long path;
    four images also filed under a second class: duplicate groups with conflicting labels."""
    from csl_core.data.builtin import load_demo, load_fashion_mnist

    try:
        source = load_fashion_mnist()[0]
    except Exception:   # not installed: the digits
        source = load_demo()[0]
    rng = np.random.default_rng(0)
    photos = root / "photos-of-clothes-sorted-by-hand-in-the-spring-of-2026"
    for label, name in enumerate(LONG_NAMES):
        (photos / name).mkdir(parents=True)
        for k, index in enumerate(rng.permutation(np.flatnonzero(source.labels == label))[:30]):
            Image.fromarray(source.images[index].squeeze()).save(photos / name / f"{name}_{k:04d}.png")
    for k in range(4):
        first = sorted((photos / LONG_NAMES[k]).iterdir())[0]
        shutil.copy(first, photos / LONG_NAMES[k + 5] / f"copy-of-{first.name}")
    return photos


@pytest.fixture(scope="module")
def wide_runs(tmp_path_factory) -> Path:
    """``long``: the folder above; ``fashion``: 600 Fashion-MNIST images under their real names (skipped where
    Debian's dataset-fashion-mnist is not installed); both 3 epochs, 10% of labels flipped."""
    tmp = tmp_path_factory.mktemp("wide")
    runs = tmp / "runs"
    photos = _folder(tmp)
    train(TrainConfig.for_source(f"imagefolder:{photos}", epochs=3, inject_noise=0.1, device="cpu", seed=0),
          runs / "long")
    try:
        config = TrainConfig.for_source("fashion-mnist", epochs=3, inject_noise=0.1, device="cpu", seed=0, subset=600)
        train(config, runs / "fashion")
    except Exception:   # noqa: BLE001  (no Fashion-MNIST here: the 40-character run alone)
        pass
    return runs


def _visit(page, link: str, ready: str) -> None:
    page.get_by_role("link", name=link, exact=True).click()
    page.get_by_text(ready).first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    time.sleep(0.7)   # components and grids draw after their data arrives


def _columns_hold_their_text(page, link: str) -> list[str]:
    """Every table column narrower than its header or a value shown, in the browser's font."""
    short = []
    grids = page.evaluate(GRID_TEXTS)
    if link in ("Review queue", "Class pairs"):   # the tables are there, the columns in view read
        assert grids and max(len(grid) for grid in grids) >= 3, link
    for grid in grids:
        for column in grid:
            room = column_px(column["header"], column["values"]) - CELL_PADDING_PX + 4
            if column["widest"] > room and column["header"] not in ("", "image"):
                short.append(f"{column['header']!r}: {column['widest']:.0f} px of text in {room} px")
    return short


def test_every_page_fits_at_1280_with_real_and_40_character_class_names(wide_runs, chromium, tmp_path,
                                                                         serve_dashboard):
    from playwright.sync_api import expect

    runs = [name for name in ("fashion", "long") if (wide_runs / name).is_dir()]
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    cut: dict[str, list[str]] = {}
    with serve_dashboard(tmp_path, wide_runs) as url:
        for run in runs:
            page.goto(f"{url}/?run={wide_runs / run}")
            page.get_by_text("Open run").wait_for(timeout=TIMEOUT_MS)
            for link, ready in PAGES:
                if run == "fashion" and link not in WIDE_PAGES:
                    continue   # the 40-character run walks every page; the real names the wide ones
                _visit(page, link, ready)
                page.screenshot(path=str(tmp_path / f"{run}-{link}.png"))
                cut[f"{run}: {link}"] = page.evaluate(CUT_TEXT) + _columns_hold_their_text(page, link)
        assert {where: texts for where, texts in cut.items() if texts} == {}

        # Class pairs with 40-character names is wider than the page: it scrolls sideways, the given labels stay.
        page.goto(f"{url}/class-pairs?run={wide_runs / 'long'}")
        grid = page.locator("[data-testid='stDataFrame']").first
        grid.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_load_state("networkidle")
        time.sleep(0.7)
        box = grid.bounding_box()
        first = {"x": box["x"] + 2, "y": box["y"] + 40, "width": 120, "height": box["height"] - 60}
        rest = {"x": box["x"] + box["width"] - 200, "y": box["y"] + 2, "width": 180, "height": box["height"] - 20}
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)   # the hovered row is lit
        time.sleep(0.3)
        before = page.screenshot(clip=first), page.screenshot(clip=rest)
        page.mouse.wheel(600, 0)
        time.sleep(0.7)
        after = page.screenshot(clip=first), page.screenshot(clip=rest)
        page.screenshot(path=str(tmp_path / "long-class-pairs-scrolled.png"))
        assert after[1] != before[1], "the matrix did not scroll sideways"
        assert after[0] == before[0], "the given labels moved with the scroll"

        # Duplicates: each file on one line, shortened in the middle, whole on hover.
        page.goto(f"{url}/duplicate-groups?run={wide_runs / 'long'}")
        page.get_by_text("Undo last duplicates action").wait_for(timeout=TIMEOUT_MS)
        samples = RunStore(wide_runs / "long").samples()
        copies = [path for path in samples["path"] if "copy-of-" in path]
        assert copies and all(len(path) > 100 for path in copies)
        shown = page.locator(".csl-middle")
        shown.first.wait_for(timeout=TIMEOUT_MS)
        expect(shown).to_have_count(2 * len(copies), timeout=TIMEOUT_MS)   # every group drawn: a copy and its original
        titles = shown.evaluate_all("(ns) => ns.map((n) => n.title)")
        assert set(copies) <= set(titles)
        for k in range(shown.count()):
            path = shown.nth(k)
            line = path.evaluate("(n) => parseFloat(getComputedStyle(n).lineHeight)")
            assert path.bounding_box()["height"] <= line * 1.2, titles[k]   # one line
            assert titles[k].endswith(path.locator("span").last.inner_text())   # the file name's end shown
        shortened = shown.filter(has_text=copies[0][-8:]).first
        assert shortened.evaluate("(n) => n.firstChild.scrollWidth > n.firstChild.clientWidth")   # "…" in between
        shortened.hover()   # the browser shows the title; Streamlit's help icon beside it shows the same
        block = page.locator("[data-testid='stMarkdown']").filter(has=page.locator(f"[title='{copies[0]}']")).first
        block.locator("[data-testid='stTooltipHoverTarget']").first.hover()
        expect(page.get_by_text(copies[0]).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "long-duplicates-hover.png"))

        # Focused review: which class each digit key relabels to, where the keys are used.
        page.goto(f"{url}/focused-review?run={wide_runs / runs[0]}")
        page.locator("[data-testid='focus-view'] img.big").wait_for(timeout=TIMEOUT_MS)
        mapping = page.get_by_text("Digit keys relabel to:")
        expect(mapping).to_be_visible()
        classes = ["T-shirt/top", "Trouser"] if runs[0] == "fashion" else LONG_NAMES[:2]
        expect(mapping).to_contain_text(f"0 {classes[0]} · 1 {classes[1]}")

        # Help: a link to another document opens it in this tab, the open run kept.
        page.get_by_role("link", name="Help", exact=True).click()
        page.get_by_text("Quick start").first.wait_for(timeout=TIMEOUT_MS)
        page.locator("a[href*='doc=docs%2Fdashboard.md']").first.click()
        page.wait_for_url("**/documentation?doc=docs%2Fdashboard.md*", timeout=TIMEOUT_MS)
        assert len(page.context.pages) == 1
        page.get_by_role("heading", name="The dashboard").first.wait_for(timeout=TIMEOUT_MS)
        assert runs[0] in page.url
