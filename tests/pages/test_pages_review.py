"""The review pages and the run handling, driven with Streamlit's AppTest: class pairs, the focused
review's queue, a bad data path, the open run in the address."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from csl_core.analysis.scores import default_score, suspicion
from csl_core.data import DataError
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore
from tests.support import HANG_SECONDS

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_a_bad_data_path_is_a_message_and_starts_nothing(runs_dir, tmp_path, open_app):
    from pages._common import job_registry

    jobs_before = len(job_registry().all())
    at = open_app()
    at.selectbox(key="run_source").set_value("imagefolder").run()
    at.text_input(key="run_location").input(str(tmp_path / "no-such-folder")).run()
    assert any("does not exist" in w.value for w in at.warning), "no message while typing the path"
    at.button(key="run_start").click().run()
    assert any("does not exist" in e.value for e in at.error), [e.value for e in at.error]
    assert len(job_registry().all()) == jobs_before
    assert list(runs_dir.iterdir()) == []
    # A folder without class folders, and a CSV without a label column: each said on the form.
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    at.text_input(key="run_location").input(str(tmp_path / "flat")).run()
    at.button(key="run_start").click().run()
    assert any("no class folders" in e.value for e in at.error), [e.value for e in at.error]
    (tmp_path / "labels.csv").write_text("path,class\na.png,cat\n")
    at.selectbox(key="run_source").set_value("csv").run()
    at.text_input(key="run_location").input(str(tmp_path / "labels.csv")).run()
    at.button(key="run_start").click().run()
    assert any("'label'" in e.value and "line 1" in e.value for e in at.error), [e.value for e in at.error]
    assert len(job_registry().all()) == jobs_before
    assert list(runs_dir.iterdir()) == []


def test_the_run_name_follows_the_source(runs_dir, tmp_path, open_app):
    at = open_app()
    assert at.text_input(key="run_name").value.startswith("demo-")
    at.selectbox(key="run_source").set_value("imagefolder").run()
    assert at.text_input(key="run_name").value.startswith("imagefolder-")
    (tmp_path / "pets" / "cat").mkdir(parents=True)
    at.text_input(key="run_location").input(str(tmp_path / "pets")).run()
    assert at.text_input(key="run_name").value.startswith("pets-")
    at.text_input(key="run_name").input("my-name").run()
    at.selectbox(key="run_source").set_value("demo").run()
    assert at.text_input(key="run_name").value == "my-name"     # typed by the person: kept


def test_the_open_run_is_in_the_address_and_a_reload_keeps_it(runs_dir, demo_copy, tmp_path, open_app):
    newer = runs_dir / "newer"
    shutil.copytree(demo_copy, newer)        # listed first (newest), so the default of a fresh session
    elsewhere = tmp_path / "elsewhere" / "gpu-run"
    shutil.copytree(demo_copy, elsewhere)
    at = open_app()
    at.text_input(key="run_open_path").input(str(elsewhere))
    at.button(key="run_open").click().run()
    no_errors(at)
    assert at.query_params["run"] == str(elsewhere)
    # A new session with the same address (a reload, a bookmark, a link someone sent) opens only a run under
    # the runs folder, writable as from the sidebar.
    outside = open_app(run=str(elsewhere))
    no_errors(outside)
    assert outside.session_state["run_path"] != str(elsewhere)
    assert any("not a run under the runs folder" in w.value for w in outside.sidebar.warning)
    reloaded = open_app(run=str(newer))
    no_errors(reloaded)
    assert reloaded.sidebar.selectbox(key="run_path").value == str(newer)
    assert not any("read-only" in i.value for i in reloaded.sidebar.info)
    fresh = open_app()
    assert fresh.sidebar.selectbox(key="run_path").value != str(elsewhere)
    broken = open_app(run=str(runs_dir / "not-a-run"))
    assert any("cannot be opened" in w.value for w in broken.sidebar.warning)


def member_table(at: AppTest):
    """The class-pair page's table of a cell's members (the editable one, beside the matrix)."""
    return next(d.value for d in at.dataframe if "file" in d.value.columns)


def test_a_class_pair_cell_lists_its_members_and_relabels_only_the_ticked_ones(runs_dir, demo_copy, open_app):
    store = RunStore(demo_copy)
    scores = store.scores()
    at = open_app()
    at.switch_page("pages/pairs.py").run()
    no_errors(at)
    assert at.selectbox(key="pair_score").value == default_score(scores)   # the default ranking, as everywhere
    top = int(at.number_input(key="pair_top").value)
    order = np.argsort(-suspicion(scores, default_score(scores)), kind="stable")[:top]
    given, suggested = scores["label"].to_numpy(), scores["suggested_label"].to_numpy()
    suspects = order[suggested[order] != given[order]]
    cells = {}
    for index in suspects:
        cells.setdefault((int(given[index]), int(suggested[index])), []).append(int(index))
    # The largest cell that is not the default one, so that the test does not pass by taking the default.
    ranked = sorted(cells.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    (g, s), members = next((cell, m) for cell, m in ranked[1:] if len(m) >= 2)
    at.selectbox(key="pair_cell").set_value(f"{g}>{s}").run()
    no_errors(at)
    # Every member is listed before anything is decided: its file, given and suggested label, and how sure
    # the suggestion is, untruncated.
    editor = f"pair_members_{g}_{s}"
    listed = at.session_state["pair_pinned"]["members"]
    assert sorted(listed) == sorted(members)
    table = member_table(at)
    names = scores["sample_id"].astype(str).to_numpy()
    assert table["file"].tolist() == [names[i] for i in listed]
    assert (table["given"] == store.classes[g]).all() and (table["suggested"] == store.classes[s]).all()
    assert np.allclose(table["confidence"], scores["suggested_confidence"].to_numpy()[listed])
    assert table["relabel"].all() and (table["decision"] == "undecided").all()
    # The person unticks the first member and relabels the rest.
    left_out = listed[0]
    at.session_state[editor] = {"edited_rows": {0: {"relabel": False}}, "added_rows": [], "deleted_rows": []}
    at.run()
    no_errors(at)
    assert at.button(key="pair_accept").label == f"Relabel the {len(members) - 1} ticked to {store.classes[s]}"
    at.button(key="pair_accept").click().run()
    no_errors(at)
    effective = DecisionLog(demo_copy).effective(store.num_samples, given)
    relabeled = effective.index[effective["action"] == "relabel"].tolist()
    assert sorted(relabeled) == sorted(set(members) - {left_out})
    assert (effective.loc[relabeled, "label"] == s).all()
    assert effective.at[left_out, "action"] == "undecided"
    assert len(DecisionLog(demo_copy).batches()) == 1          # one batch: one undo takes it back
    # The toasts say what was done and undone, in class names, never an internal batch id.
    done = len(members) - 1
    what = f"relabel of {done} image{'s' if done != 1 else ''} to '{store.classes[s]}'"
    assert [t.value for t in at.toast] == [f"done: {what} (undo takes it back)"]
    # The decided members stay in view, marked as decided; the unticked one is still undecided.
    assert at.selectbox(key="pair_cell").value == f"{g}>{s}"
    assert sorted(at.session_state["pair_pinned"]["members"]) == sorted(members)
    table = member_table(at).set_index("file")
    for index in members:
        expected = "undecided" if index == left_out else f"relabeled to {store.classes[s]}"
        assert table.at[names[index], "decision"] == expected
    at.button(key="pair_undo").click().run()
    assert (DecisionLog(demo_copy).effective(store.num_samples, given)["action"] == "undecided").all()
    assert [t.value for t in at.toast] == [f"undid: {what}"]


def test_a_batch_is_described_as_a_person_says_it():
    import pandas as pd

    from pages._common import describe_batch

    classes = ["ankle_boot", "bag", "sneaker", "shirt", "coat"]
    mixed = pd.DataFrame({"action": ["drop"] * 7 + ["keep"], "label": pd.array([None] * 8, dtype="Int64")})
    assert describe_batch(mixed, classes) == "drop of 7 images and keep of 1 image"
    accepted = pd.DataFrame({"action": ["relabel"] * 5, "label": pd.array([2, 2, 0, 1, 3], dtype="Int64")})
    assert describe_batch(accepted, classes) == ("relabel of 5 images to 'sneaker', 'ankle_boot', 'bag' "
                                                 "and 1 other class")


def test_the_focused_review_and_the_filters_open(runs_dir, demo_copy, open_app):
    store = RunStore(demo_copy)
    scores = store.scores()
    at = open_app()
    at.switch_page("pages/focus.py").run()
    no_errors(at)
    queue = at.session_state["foc_queue"]
    assert len(queue) == store.num_samples
    assert scores["csl"].to_numpy()[queue[0]] == scores["csl"].max()
    suspect = int(queue[0])
    given = int(scores.at[suspect, "label"])
    fragment = str(scores.at[suspect, "sample_id"])[:10]      # e.g. "digits-079"
    at.multiselect(key="foc_given").select(given).run()
    at.text_input(key="foc_search").input(fragment.upper()).run()        # the search ignores case
    narrowed = at.session_state["foc_queue"]
    ids = scores["sample_id"].astype(str)
    expected = np.flatnonzero((scores["label"].to_numpy() == given) & ids.str.contains(fragment, regex=False)
                              .to_numpy())
    assert suspect in narrowed and sorted(narrowed) == sorted(expected)
    assert list(narrowed) == sorted(narrowed, key=lambda i: (-scores.at[i, "csl"], i))   # most suspicious first


def test_a_failed_run_is_listed_last_and_never_the_default(runs_dir, demo_copy, open_app):
    from csl_core.engine.jobs import Job
    from csl_core.engine.train import TrainConfig
    from pages._common import job_registry

    failed = runs_dir / "broken-before-its-folder"
    job = job_registry().start(Job(TrainConfig(data="imagefolder:/nowhere"), failed))
    assert job.wait(timeout=HANG_SECONDS).state == "failed"       # before its folder exists
    try:
        at = open_app()
        picker = at.sidebar.selectbox(key="run_path")
        assert picker.value == str(demo_copy)
        assert picker.options[-1] == failed.name          # still listed, so that its error can be read
    finally:
        job_registry().discard(failed)


def test_a_new_source_kind_is_one_entry_of_the_sources_table(runs_dir, monkeypatch, open_app):
    """Where a change goes (docs/architecture.md): a source kind added to SOURCES alone loads, is checked
    before a job starts, and is offered by the Run page with its label and path prompt."""
    from csl_core.data import SourceKind, build_training_set, check_source, load_demo, load_source, sources

    toy = SourceKind("toy:DIR", lambda args, **_: load_demo(), "Toy digits from a folder", "Toy folder")
    monkeypatch.setitem(sources.SOURCES, "toy", toy)
    monkeypatch.setattr(sources, "SOURCE_KINDS", tuple(sources.SOURCES))
    train, test = load_source("toy")
    assert len(train) == len(load_demo()[0]) and test is not None
    assert check_source("toy") == "a toy source"
    with pytest.raises(DataError, match="toy: '/no/such/dir' does not exist"):
        check_source("toy:/no/such/dir")
    assert len(build_training_set("toy", subset=50)) == 50
    at = open_app()
    assert "Toy digits from a folder" in at.selectbox(key="run_source").options
    at.selectbox(key="run_source").set_value("toy").run()
    assert not at.exception
    assert at.text_input(key="run_location").label == "Toy folder"


def test_the_suggested_cleaning_shows_what_it_does_then_applies_as_one_undoable_batch(runs_dir, demo_copy, open_app):
    from csl_core.analysis.cleaning import suggested_cleaning

    store = RunStore(demo_copy)
    scores = store.scores()
    given = scores["label"].to_numpy()
    log = DecisionLog(demo_copy)
    plan = suggested_cleaning(scores)
    person = int(np.flatnonzero(plan.action != "keep")[0])   # a person has already kept one suspect
    log.record([person], "keep")
    at = open_app()
    at.switch_page("pages/export.py").run()
    no_errors(at)
    plan = suggested_cleaning(scores, log.effective(store.num_samples, given)["action"].to_numpy(object))
    counts = plan.counts()
    assert plan.action[person] == "keep" and plan.budget == counts["relabel"] + counts["drop"] > 0
    # it says before applying how many of its actions are expected to be right
    assert any(f"about **{plan.expected_right:,.0f}** are expected to be right" in c.value for c in at.caption)
    # Before anything is applied: the counts per action and per class.
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Relabel"], metrics["Drop"], metrics["Keep"]) == tuple(f"{counts[a]:,}" for a in
                                                                           ("relabel", "drop", "keep"))
    by_class = next(d.value for d in at.dataframe if "relabel (into)" in d.value.columns).set_index("class")
    assert by_class.loc["all", "drop"] == counts["drop"] and len(by_class) == len(store.classes) + 1
    assert len(log.batches()) == 1                     # nothing applied yet
    at.button(key="clean_accept").click().run()
    no_errors(at)
    effective = log.effective(store.num_samples, given)
    assert effective.at[person, "action"] == "keep"    # the person's own decision stands
    assert set(effective.index[effective["action"] == "relabel"]) == set(plan.rows("relabel"))
    assert set(effective.index[effective["action"] == "drop"]) == set(plan.rows("drop"))
    relabeled = plan.rows("relabel")
    assert (effective.loc[relabeled, "label"].to_numpy() == plan.label[relabeled]).all()
    assert len(log.batches()) == 2                     # one batch for the whole cleaning
    at.button(key="clean_undo").click().run()
    effective = log.effective(store.num_samples, given)
    assert effective.at[person, "action"] == "keep" and (effective.drop(index=person)["action"] == "undecided").all()


def test_the_run_page_and_info_give_one_count(runs_dir, demo_copy, capsys, open_app):
    from csl_core.analysis.noise_rate import noise_count
    from csl_core.cli import main

    count = noise_count(RunStore(demo_copy).scores())
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(demo_copy)).run()
    no_errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Likely mislabeled"] == f"~{count.count:,}"
    text = " ".join(m.value for m in at.markdown)
    assert "look mislabeled: the model's suggested label" not in text     # the second count is gone
    assert main(["info", str(demo_copy)]) == 0
    assert count.text() in capsys.readouterr().out
