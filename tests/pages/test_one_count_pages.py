"""One count of wrong labels on every page (#32): the Run page's metric and review budget, Focused review's
"likely mislabeled end here" marker and the Export page's caption all show ``noise_count(scores, actions)``,
the person's decisions counted as answers; the audit in Focused review asks ``audit_sample`` of the run, in
its order, and shows the model's p(wrong) beside each suggestion."""
from __future__ import annotations

import ast
import json
import zlib
from pathlib import Path

import numpy as np

from csl_core.analysis.audit import audit_sample
from csl_core.analysis.noise_rate import noise_count
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
AUDIT = "Audit (answer ~40-100 questions to make the count honest)"


def _actions(run, scores) -> np.ndarray:
    return DecisionLog(run, read_only=True).effective(len(scores), scores["label"].to_numpy(np.int64))[
        "action"].to_numpy(object)


def _focus_data(at) -> dict:
    """What Focused review sent its view (the custom component's data)."""
    views = [e for e in at.get("bidi_component")]
    assert len(views) == 1, views
    return json.loads(views[0].proto.json)


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _run_page_count(at) -> tuple[str, str]:
    metric = next(m for m in at.metric if m.label == "Likely mislabeled")
    text = next(m.value for m in at.markdown if "wrong (" in m.value)
    return metric.value, text


def test_every_page_shows_the_one_count_with_the_persons_decisions(runs_dir, demo_copy, open_app):
    scores = RunStore(demo_copy).scores()
    model = noise_count(scores, _actions(demo_copy, scores))
    assert model.answers == 0 and model.text().endswith("from the model)")
    at = open_app()
    _no_errors(at)
    value, text = _run_page_count(at)
    assert value == f"~{model.count:,}" and model.text().capitalize() in text

    # 25 decisions: the 15 surest labels kept, the 10 likeliest wrong dropped or relabelled
    p = scores["p_wrong"].to_numpy()
    order = np.argsort(p, kind="stable")
    log = DecisionLog(demo_copy)
    log.record(order[:15].tolist(), "keep", source="test")
    log.record(order[-10:-5].tolist(), "drop", source="test")
    log.record(order[-5:].tolist(), "relabel", label=scores["suggested_label"].to_numpy()[order[-5:]].tolist(),
               source="test")
    counted = noise_count(scores, _actions(demo_copy, scores))
    assert counted.answers == 25 and counted.text().endswith("from your 25 answers)")

    at.run()   # the Run page again: the log grew, so the count is computed again
    _no_errors(at)
    value, text = _run_page_count(at)
    assert value == f"~{counted.count:,}" and counted.text().capitalize() in text
    assert f"review the top **{min(counted.count, len(scores)):,}**" in text   # the review budget is that count

    at.switch_page("pages/focus.py").run()
    _no_errors(at)
    likely = _focus_data(at)["likely"]
    assert likely["count"] == counted.count and likely["text"] == counted.text()

    at.switch_page("pages/export.py").run()
    _no_errors(at)
    assert any(f"The run's count: **{counted.text()}**" in c.value for c in at.caption)

    at.switch_page("pages/review.py").run()   # the model's p(wrong) beside each suggestion
    _no_errors(at)
    table = at.dataframe[0].value
    rows = scores.set_index("sample_id").loc[table["sample"], "p_wrong"].to_numpy()
    np.testing.assert_allclose(table["p(wrong)"].to_numpy(np.float64), rows)


# The library's counts and estimates, and the one page helper allowed to call each (run_count; the Run page's
# standing, which is noise_count with the review budget): any other call on a page is a second count.
COUNTING = {"noise_count": {"pages/_common.py"}, "standing": {"pages/run.py"}, "wrong_count": set(),
            "estimate_label_noise": set(), "wrong_label_weights": set(), "estimate_with_answers": set()}


def test_no_page_counts_wrong_labels_but_through_the_one_count():
    found = set()
    for file in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in COUNTING:
                    found.add((name, str(file.relative_to(ROOT))))
    assert found == {(name, where) for name, places in COUNTING.items() for where in places}


def test_the_audit_asks_the_runs_audit_sample_in_order_and_goes_on_where_it_stopped(runs_dir, demo_copy, open_app):
    scores = RunStore(demo_copy).scores()
    p = scores["p_wrong"].to_numpy()
    expected = audit_sample(p, 100, seed=zlib.crc32(b"demo"))   # stable per run: seeded by its name
    at = open_app()
    at.switch_page("pages/focus.py").run()
    at.radio(key="foc_mode").set_value(AUDIT).run()
    _no_errors(at)
    queue = at.session_state["foc_queue"]
    assert len(queue) == 100 and list(queue) == list(expected)
    data = _focus_data(at)
    assert data["audit"] and data["total"] == 100 and data["decided"] == 0
    first = data["items"][0]
    assert first["index"] == expected[0] and first["p_wrong"] == float(p[expected[0]])   # p(wrong) on the card

    # three questions answered (K, D, a relabel): counted as answered, and a new visit goes on at the fourth
    labels = scores["label"].to_numpy()
    log = DecisionLog(demo_copy)
    log.record([int(expected[0])], "keep", source="test")
    log.record([int(expected[1])], "drop", source="test")
    log.record([int(expected[2])], "relabel", label=int((labels[expected[2]] + 1) % 10), source="test")
    at.run()
    assert _focus_data(at)["decided"] == 3
    again = open_app()
    again.switch_page("pages/focus.py").run()
    again.radio(key="foc_mode").set_value(AUDIT).run()
    _no_errors(again)
    assert list(again.session_state["foc_queue"]) == list(expected) and again.session_state["foc_cursor"] == 3
