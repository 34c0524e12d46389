"""The focused review in headless Chromium at 1280x800: 20 demo samples decided by keyboard only, each
decision checked in the decision log and the export; the key-to-next-image time measured; no control
label truncated on the review pages."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csl_core.analysis.scores import default_score, suspicion
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore
from tests.support.browser import CUT_TEXT

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]

# Every kind of key, 20 samples decided in the end (an undone decision is decided again).
KEYS = ["a", "k", "d", "3", "ArrowRight", "a", "u", "k", "7", "l", "d", "a", "k", "j", "0", "d", "a",
        "ArrowLeft", "ArrowRight", "k", "5", "d", "u", "u", "a", "1", "k", "d", "a", "k", "d", "a"]


@pytest.fixture()
def demo_served(tmp_path, demo_run, serve_dashboard, copy_demo):
    """``streamlit run app.py`` over a runs folder holding a copy of the demo run."""
    runs = tmp_path / "runs"
    copy_demo(runs / "demo")
    with serve_dashboard(tmp_path, runs) as url:
        yield url, runs / "demo"


def expected_decisions(keys: list[str], queue: np.ndarray, given: np.ndarray, suggested: np.ndarray
                       ) -> tuple[dict[int, tuple[str, int]], list[int]]:
    """What the keys should leave behind: sample -> (effective action, label), and the position after each key."""
    decided: dict[int, tuple[str, int]] = {}
    history: list[int] = []
    positions = []
    pos = 0
    for key in keys:
        sample = int(queue[pos])
        if key in ("ArrowRight", "l"):
            pos += 1
        elif key in ("ArrowLeft", "j"):
            pos -= 1
        elif key == "u":
            pos = history.pop()
            decided.pop(int(queue[pos]))
        else:
            label = {"a": int(suggested[sample]), "k": int(given[sample]), "d": int(given[sample])}.get(key)
            label = int(key) if label is None else label
            action = "drop" if key == "d" else ("keep" if label == given[sample] else "relabel")
            decided[sample] = (action, label)
            history.append(pos)
            pos += 1
        positions.append(pos)
    return decided, positions


def test_review_twenty_samples_by_keyboard(demo_served, chromium, tmp_path):
    from playwright import sync_api

    url, run = demo_served
    store = RunStore(run)
    scores = store.scores()
    given = scores["label"].to_numpy()
    suggested = scores["suggested_label"].to_numpy()
    # the default queue: the default ranking, all undecided
    queue = np.argsort(-suspicion(scores, default_score(scores)), kind="stable")
    expected, positions = expected_decisions(KEYS, queue, given, suggested)
    assert len(expected) == 20
    browser = chromium
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.get_by_text("Open run").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("link", name="Focused review", exact=True).click()
    image = page.locator("[data-testid='focus-view'] img.big")
    image.wait_for(timeout=TIMEOUT_MS)
    assert page.evaluate(CUT_TEXT) == []
    page.screenshot(path=str(tmp_path / "focus.png"))
    sync_api.expect(image).to_have_attribute("data-index", str(queue[0]), timeout=TIMEOUT_MS)
    for key, pos in zip(KEYS, positions):
        page.keyboard.press(key)
        # The next image is on screen without waiting for the server.
        sync_api.expect(image).to_have_attribute("data-index", str(queue[pos]), timeout=5_000)
        sync_api.expect(image).to_have_attribute("data-pos", str(pos), timeout=5_000)
    # each measure is taken a frame after its image is decoded, so the last ones may trail the image shown
    measures = "performance.getEntriesByName('csl-focus-key-to-image')"
    try:
        page.wait_for_function(f"() => {measures}.length >= {len(KEYS)}", timeout=10_000)
    except sync_api.TimeoutError:
        pass   # the count is asserted below
    timings = page.evaluate(f"() => {measures}.map(e => e.duration)")
    # Every decision reaches the log (the view sends them as the fragment reruns).
    deadline = time.monotonic() + 60
    while True:
        effective = DecisionLog(run).effective(store.num_samples, given)
        decided = effective[effective["action"] != "undecided"]
        got = {int(i): (str(a), int(label)) for i, a, label in zip(decided.index, decided["action"],
                                                                    decided["label"])}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == expected
    assert errors == []

    page.get_by_role("link", name="Export", exact=True).click()
    page.get_by_role("button", name="Write to the run folder").click()
    page.get_by_text("Wrote ").first.wait_for(timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 30
    while not (run / "export" / "cleaned_labels.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    exported = pd.read_csv(run / "export" / "cleaned_labels.csv", dtype=str, keep_default_na=False)
    for sample, (action, label) in expected.items():
        assert exported.at[sample, "action"] == action, sample
        assert exported.at[sample, "label"] == store.classes[label], sample
    assert (exported["action"] != "undecided").sum() == len(expected)

    # Galleries: drop one card by its icon; select three by click and shift-click, keep them at once.
    page.get_by_role("link", name="Galleries", exact=True).click()
    page.get_by_text("Hardest: highest").wait_for(timeout=TIMEOUT_MS)
    hard = page.locator("[data-testid='thumbnail-grid']").nth(1).locator("[data-testid='grid-card']")
    hard.nth(5).wait_for(timeout=TIMEOUT_MS)
    shown = [int(hard.nth(i).get_attribute("data-index")) for i in range(6)]
    hard.nth(0).locator("button[data-act='drop']").click()
    sync_api.expect(hard.nth(0)).to_have_class(re.compile("decided"), timeout=TIMEOUT_MS)
    hard.nth(2).locator(".thumb").click()
    hard.nth(4).locator(".thumb").click(modifiers=["Shift"])
    sync_api.expect(page.locator("[data-testid='grid-card'].selected")).to_have_count(3)
    page.locator("[data-testid='thumbnail-grid']").nth(1).locator("button[data-bulk='keep']").click()
    sync_api.expect(hard.nth(4)).to_have_class(re.compile("decided"), timeout=TIMEOUT_MS)
    effective = DecisionLog(run).effective(store.num_samples, given)
    assert effective.at[shown[0], "action"] == "drop"
    assert (effective.loc[shown[2:5], "action"] == "keep").all()
    assert effective.at[shown[1], "action"] == expected.get(shown[1], ("undecided",))[0]

    # No button label cut on any page.
    for link, ready in (("Galleries", "Hardest: highest"), ("Class pairs", "Untick any"),
                        ("Duplicates", "Undo last duplicates action"),
                        ("Review queue", "Undo last action"), ("Run", "What next"),
                        ("Trajectories", "Samples per side"), ("Export", "Download CSV"),
                        ("Evaluate", "Errors to find")):
        page.get_by_role("link", name=link, exact=True).click()
        page.get_by_text(ready).first.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(CUT_TEXT) == [], link
    assert len(timings) == len(KEYS)
    median = float(np.median(timings))
    print(f"\nkey to next image, {len(timings)} keys: median {median:.1f} ms, max {max(timings):.1f} ms")
    assert median < 200
