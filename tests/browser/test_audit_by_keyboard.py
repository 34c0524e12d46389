"""The audit in headless Chromium (#32): Focused review's Audit queue answered by keyboard (K right, D wrong, a
digit relabel), each answer in the decision log, the progress and the run's count on screen."""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import pytest

from csl_core.analysis.audit import audit_sample
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]


def test_audit_questions_answered_by_keyboard_reach_the_log(tmp_path, demo_run, serve_dashboard, copy_demo,
                                                             chromium):
    from playwright.sync_api import expect

    runs = tmp_path / "runs"
    run = copy_demo(runs / "demo")
    store = RunStore(run)
    scores = store.scores()
    labels = scores["label"].to_numpy()
    asked = audit_sample(scores["p_wrong"].to_numpy(), 100, seed=zlib.crc32(b"demo"))
    relabel_to = int((labels[asked[2]] + 1) % len(store.classes))
    expected = {int(asked[0]): "keep", int(asked[1]): "drop", int(asked[2]): "relabel", int(asked[3]): "keep"}
    with serve_dashboard(tmp_path, runs) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.get_by_text("Open run").wait_for(timeout=TIMEOUT_MS)
        page.get_by_role("link", name="Focused review", exact=True).click()
        view = page.locator("[data-testid='focus-view']")
        view.locator("img.big").wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("Audit (answer").click()
        image = view.locator("img.big")
        expect(image).to_have_attribute("data-index", str(asked[0]), timeout=TIMEOUT_MS)
        expect(view.locator(".where")).to_contain_text("Audit: 0 of 100 answered", timeout=TIMEOUT_MS)
        expect(view.locator(".labels")).to_contain_text("p(wrong) ")
        for pos, key in enumerate(["k", "d", str(relabel_to), "k"]):
            expect(image).to_have_attribute("data-index", str(asked[pos]), timeout=TIMEOUT_MS)
            page.keyboard.press(key)
        expect(view.locator(".where")).to_contain_text("Audit: 4 of 100 answered", timeout=TIMEOUT_MS)
        expect(view.locator(".likely")).to_contain_text("The run's count: about ")
        deadline = time.monotonic() + 60
        while True:
            effective = DecisionLog(run).effective(store.num_samples, labels)
            got = {int(i): str(a) for i, a in effective.loc[effective["action"] != "undecided", "action"].items()}
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == expected
        assert int(effective.at[int(asked[2]), "label"]) == relabel_to
        assert errors == []
