"""Every dashboard page driven as a person would, with Streamlit's AppTest (no browser)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from csl_core.analysis.scores import default_score, suspicion
from csl_core.engine.jobs import Job
from csl_core.engine.train import TrainConfig
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TRAINING_TIMEOUT = 240


def progress_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


pytestmark = pytest.mark.usefixtures("no_magic")


def wait_for(at: AppTest, run_path: Path, state: str, timeout: float = TRAINING_TIMEOUT, *,
             progress: bool = True) -> None:
    """Wait until the run's background job reports ``state``, then rerun the page once (as the live
    fragment would have done meanwhile) and check it says so."""
    from pages._common import job_registry

    deadline = time.monotonic() + timeout
    job = job_registry().get(run_path)
    while job.status().state != state:
        assert time.monotonic() < deadline, f"the job did not reach '{state}' in {timeout}s: {job.status()}"
        time.sleep(0.5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if progress:
        assert any(text.startswith(state) for text in progress_texts(at)), progress_texts(at)


def read_export(run_path: Path) -> pd.DataFrame:
    text_columns = ("id_or_path", "original_label", "label", "action", "suggested_label")
    return pd.read_csv(run_path / "export" / "cleaned_labels.csv", keep_default_na=False,
                       dtype={c: str for c in text_columns})


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.slow
def test_a_person_cleans_the_demo(runs_dir, open_app):
    # ---- Run page: the demo is preselected; train, stop after the first epoch, resume, finish.
    # Enough epochs that the Stop button is still there when the page looks (a demo epoch can take
    # well under a second on idle cores).
    epochs = 30
    at = open_app()
    no_errors(at)
    assert at.selectbox(key="run_source").value == "demo"
    at.number_input(key="run_epochs").set_value(epochs)
    at.text_input(key="run_name").input("demo-ui")
    at.button(key="run_start").click().run()
    no_errors(at)
    run_path = runs_dir / "demo-ui"
    assert at.sidebar.selectbox(key="run_path").value == str(run_path)
    deadline = time.monotonic() + TRAINING_TIMEOUT
    while not (run_path / "meta.json").exists() or RunStore(run_path).finished_epochs < 1:
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.5)
    at.run()
    at.button(key="run_stop").click().run()
    wait_for(at, run_path, "stopped")
    assert RunStore(run_path).finished_epochs < epochs
    at.button(key="run_resume").click().run()
    wait_for(at, run_path, "finished")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Epoch"] == f"{epochs}/{epochs}"
    assert len(at.get("plotly_chart")) == 2           # loss/accuracy curves and the CSL histogram
    assert "run_stop" not in [b.key for b in at.button]

    store = RunStore(run_path)
    scores = store.scores()

    # ---- Trajectories: the peacock figure, a sample's details, the two scatters.
    at.switch_page("pages/trajectories.py").run()
    no_errors(at)
    at.selectbox(key="traj_class").set_value(3).run()
    assert len(at.get("plotly_chart")) == 3
    members = scores.index[scores["label"] == 3]
    easiest = int(scores.loc[members, "csl"].idxmin())
    at.selectbox(key="traj_sample").set_value(easiest).run()
    details = " ".join(m.value for m in at.markdown)
    assert scores.at[easiest, "sample_id"] in details and "Given label: **3**" in details
    assert len(at.get("image")) == 1

    # ---- Galleries: the hardest images of class 0 in the right-hand grid; relabel one, drop another
    # (recorded as a click on the grid records them: its clicks are driven in tests/browser/test_browser_review.py).
    at.switch_page("pages/galleries.py").run()
    no_errors(at)
    at.selectbox(key="gal_class").set_value(0).run()
    # the default ranking (fused where the run has it), as the review queue: not CSL alone
    by_default = pd.Series(suspicion(scores, default_score(scores)), index=scores.index)
    assert default_score(scores) == "fused"
    hardest = by_default[scores["label"] == 0].sort_values(ascending=False, kind="stable").index[:2].tolist()
    relabeled, dropped = int(hardest[0]), int(hardest[1])
    new_label = int(scores.at[relabeled, "suggested_label"])
    if new_label == 0:
        new_label = 1

    def grid(key: str) -> list[dict]:
        element = next(e for e in at.get("bidi_component") if e.proto.id.endswith(key))
        return json.loads(element.proto.json)["items"]

    assert [item["index"] for item in grid("gal_hard")][:2] == [relabeled, dropped]
    assert len(grid("gal_easy")) == 12 and len(grid("gal_hard")) == 12
    from pages._grid import apply_grid_action

    apply_grid_action(store, {"action": "relabel", "indices": [relabeled], "label": new_label},
                      suggested=scores["suggested_label"].to_numpy(), source="gallery")
    apply_grid_action(store, {"action": "drop", "indices": [dropped]}, suggested=None, source="gallery")
    at.run()
    no_errors(at)
    cards = {item["index"]: item["decision"] for item in grid("gal_hard")}
    assert cards[relabeled] == f"relabeled to {store.classes[new_label]}" and cards[dropped] == "dropped"

    # ---- Review queue: accept the suggestions for the top 3, drop the next 2, undo the drop.
    at.switch_page("pages/review.py").run()
    no_errors(at)
    assert at.multiselect(key="rev_decision").value == ["undecided"]
    table = at.dataframe[0].value
    assert len(table) == 25 and table["rank"].is_monotonic_increasing
    order = np.argsort(-suspicion(scores, default_score(scores)), kind="stable")  # the queue's default ranking
    queue = [int(i) for i in scores.index[order] if i not in (relabeled, dropped)]
    accepted = queue[:3]
    undone = queue[3:5]
    at.radio(key="rev_scope").set_value("top N of the queue").run()
    at.number_input(key="rev_top_n").set_value(3).run()
    at.button(key="rev_accept").click().run()
    no_errors(at)
    at.number_input(key="rev_top_n").set_value(2).run()
    at.button(key="rev_drop").click().run()
    assert set(at.dataframe[0].value["sample"]).isdisjoint(scores.loc[accepted + undone, "sample_id"])
    at.button(key="rev_undo").click().run()
    no_errors(at)
    assert set(scores.loc[undone, "sample_id"]) <= set(at.dataframe[0].value["sample"])

    # ---- Export: write, read back, check exactly those rows; then leave the dropped row out.
    at.switch_page("pages/export.py").run()
    no_errors(at)
    at.button(key="exp_write").click().run()
    no_errors(at)
    assert at.success, "no confirmation after writing"
    exported = read_export(run_path)
    assert list(exported.columns) == ["id_or_path", "original_label", "label", "action", "csl", "csl_rank",
                                      "suggested_label", "suggested_confidence", "p_wrong"]
    np.testing.assert_allclose(exported["suggested_confidence"], scores["suggested_confidence"], atol=1e-4)
    np.testing.assert_allclose(exported["p_wrong"], scores["p_wrong"], atol=1e-4)
    assert len(exported) == len(scores)
    exported.index = scores.index
    expected = {relabeled: ("relabel", store.classes[new_label]), dropped: ("drop", store.classes[0])}
    for index in accepted:
        suggestion = int(scores.at[index, "suggested_label"])
        action = "keep" if suggestion == scores.at[index, "label"] else "relabel"
        expected[index] = (action, store.classes[suggestion])
    decided = exported[exported["action"] != "undecided"]
    assert set(decided.index) == set(expected)
    for index, (action, label) in expected.items():
        assert (exported.at[index, "action"], exported.at[index, "label"]) == (action, label), index
    untouched = exported.drop(index=list(expected))
    assert (untouched["label"] == untouched["original_label"]).all()
    assert (exported["id_or_path"] == scores["sample_id"]).all()
    at.checkbox(key="exp_include_dropped").uncheck().run()
    at.button(key="exp_write").click().run()
    without = read_export(run_path)
    assert len(without) == len(scores) - 1
    assert scores.at[dropped, "sample_id"] not in set(without["id_or_path"])

    # ---- Evaluate: the demo has ground truth; the decisions are counted.
    at.switch_page("pages/evaluate.py").run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Decisions"] == str(len(expected))
    assert DecisionLog(run_path).batches()["undone"].sum() == 1


def test_pages_without_a_run_explain_what_to_do(runs_dir, open_app):
    at = open_app()
    no_errors(at)
    for page in ("pages/trajectories.py", "pages/galleries.py", "pages/review.py", "pages/export.py",
                 "pages/evaluate.py"):
        at.switch_page(page).run()
        no_errors(at)
        assert any("No run is open" in i.value for i in at.info), page


def test_a_failed_job_shows_its_error_and_offers_resume(runs_dir, demo_run, open_app, copy_demo):
    run_path = runs_dir / "interrupted"
    copy_demo(run_path)
    meta = json.loads((run_path / "meta.json").read_text())
    meta["completed"] = False
    (run_path / "meta.json").write_text(json.dumps(meta))
    from pages._common import job_registry

    (run_path / "checkpoint.pt").write_bytes(b"not a checkpoint")  # the resume below fails on it
    job = job_registry().start(Job(TrainConfig.from_dict(meta["config"]), run_path, resume=True))
    status = job.wait(timeout=120)
    assert status.state == "failed" and status.error
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(run_path)).run()
    shown = [e.value.replace("\\", "").replace("\u200b", "") for e in at.error]   # as text, not Markdown
    assert any(status.error in e for e in shown), (status.error, shown)
    assert "run_resume" in [b.key for b in at.button]


def test_a_run_from_elsewhere_opens_by_path(runs_dir, demo_run, tmp_path, open_app, copy_demo):
    elsewhere = tmp_path / "gpu-box-run"
    copy_demo(elsewhere)
    at = open_app()
    at.text_input(key="run_open_path").input(str(elsewhere))
    at.button(key="run_open").click().run()
    no_errors(at)
    assert at.sidebar.selectbox(key="run_path").value == str(elsewhere)
    assert {m.label: m.value for m in at.metric}["Samples"] == f"{RunStore(elsewhere).num_samples:,}"
    at.switch_page("pages/galleries.py").run()
    no_errors(at)
    items = [item for e in at.get("bidi_component") for item in json.loads(e.proto.json)["items"]]
    assert len(items) == 24                         # 12 easiest + 12 hardest
    assert all(item["image"].startswith("data:image/png;base64,") for item in items)
