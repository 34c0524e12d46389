"""The decision log: append-only, undo as a row, effective state, concurrent writers."""
from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np
import pytest

from csl_core.run.decisions import DecisionLog, review_outcome


@pytest.fixture()
def run_dir(tmp_path):
    return _make_run(tmp_path)


def _make_run(path):
    """A run folder's ``meta.json`` as the decision log reads it: 10 samples, 3 classes."""
    path.mkdir(exist_ok=True)
    (path / "meta.json").write_text(json.dumps({"num_samples": 10, "classes": list("abc")}))
    return path


def _in_tabs(tab, tabs: int) -> list[Exception]:
    """Run ``tab(k)`` for k in range(tabs), each in its own thread; the exceptions they raised."""
    errors = []

    def guarded(k):
        try:
            tab(k)
        except Exception as e:  # pragma: no cover - the caller's assertion reports it
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(tabs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


ORIGINAL = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def test_record_and_effective(run_dir):
    log = DecisionLog(run_dir)
    b1 = log.record([1, 2], "relabel", label=0, source="gallery")
    b2 = log.record([3], "drop", source="gallery")
    b3 = log.record([4, 5], "relabel", label=[2, 0], source="review")
    assert b1 < b2 < b3
    state = log.effective(10, ORIGINAL)
    assert list(state.index) == list(range(10))
    assert state.loc[1, "action"] == "relabel" and state.loc[1, "label"] == 0
    assert state.loc[2, "label"] == 0
    assert state.loc[3, "action"] == "drop" and state.loc[3, "label"] == 0
    assert state.loc[4, "label"] == 2 and state.loc[5, "label"] == 0
    assert state.loc[5, "source"] == "review"
    assert state.loc[0, "action"] == "undecided" and state.loc[0, "label"] == 0
    assert state["decided_at"].isna().sum() == 5


def test_last_action_wins_and_relabel_to_own_label_is_keep(run_dir):
    log = DecisionLog(run_dir)
    log.record([1], "drop")
    log.record([1], "relabel", label=2)
    log.record([2], "relabel", label=2)      # its own label
    log.record([1], "not-duplicate")          # informational: changes nothing
    state = log.effective(10, ORIGINAL)
    assert (state.loc[1, "action"], state.loc[1, "label"]) == ("relabel", 2)
    assert state.loc[2, "action"] == "keep"
    log.record([1], "keep")
    state = log.effective(10, ORIGINAL)
    assert (state.loc[1, "action"], state.loc[1, "label"]) == ("keep", 1)


def test_undo_appends_and_never_deletes(run_dir):
    log = DecisionLog(run_dir)
    first = log.record([1], "relabel", label=0, source="gallery")
    second = log.record([1, 2], "drop", source="review")
    assert log.undo() == second
    state = log.effective(10, ORIGINAL)
    assert (state.loc[1, "action"], state.loc[1, "label"]) == ("relabel", 0)
    assert state.loc[2, "action"] == "undecided"
    assert log.undo() == first
    assert log.undo() is None
    assert (log.effective(10, ORIGINAL)["action"] == "undecided").all()
    history = log.history()
    assert len(history) == 5                    # 3 decision rows + 2 undo rows
    assert history["undone"].sum() == 3
    assert history.loc[history["action"] == "undo", "undoes"].tolist() == [second, first]


def test_undo_by_source_and_by_batch(run_dir):
    log = DecisionLog(run_dir)
    gallery = log.record([1], "drop", source="gallery")
    review = log.record([2], "drop", source="review")
    assert log.undo(source="gallery") == gallery
    assert log.effective(10, ORIGINAL).loc[2, "action"] == "drop"
    assert log.undo(review) == review
    assert log.undo(review) is None             # already undone
    with pytest.raises(ValueError, match="no decision batch"):
        log.undo(99)


def test_survives_reopen(run_dir):
    DecisionLog(run_dir).record([7], "relabel", label=1)
    assert DecisionLog(run_dir).effective(10, ORIGINAL).loc[7, "label"] == 1
    with sqlite3.connect(run_dir / "decisions.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kwargs, message", [
    (dict(indices=[1], action="delete"), "unknown action"),
    (dict(indices=[], action="drop"), "no samples"),
    (dict(indices=[10], action="drop"), r"in \[0, 10\)"),
    (dict(indices=[1], action="relabel"), "needs a label"),
    (dict(indices=[1], action="relabel", label=3), "class indices"),
    (dict(indices=[1, 2], action="relabel", label=[0, 1, 2]), "3 labels for 2"),
])
def test_bad_input_says_what_is_wrong(run_dir, kwargs, message):
    log = DecisionLog(run_dir)
    indices, action = kwargs.pop("indices"), kwargs.pop("action")
    with pytest.raises(ValueError, match=message):
        log.record(indices, action, **kwargs)
    assert log.revision() == 0


def test_two_tabs_at_once(run_dir):
    """Threads with their own log objects append concurrently: no lost or failed writes."""
    def tab(label):
        log = DecisionLog(run_dir)
        for i in range(25):
            log.record([i % 10], "relabel", label=label, source=f"tab{label}")

    assert not _in_tabs(tab, 3)
    log = DecisionLog(run_dir)
    assert log.revision() == 75
    assert len(log.batches()) == 75
    assert log.history()["batch"].is_unique


def test_tabs_opening_a_new_log_together(tmp_path):
    """Several tabs opening a run's log for the first time at the same moment all get it: creating the
    file and switching it to WAL is the step SQLite refuses at once ("database is locked")."""
    for trial in range(40):
        run = _make_run(tmp_path / f"run{trial}")
        start = threading.Barrier(4)

        def tab(k, run=run, start=start):   # this trial's folder, bound now
            start.wait()
            DecisionLog(run).record([k], "drop", source=f"tab{k}")

        errors = _in_tabs(tab, 4)
        assert not errors, f"trial {trial}: {errors}"
        assert DecisionLog(run).revision() == 4


def test_review_outcome(run_dir):
    log = DecisionLog(run_dir)
    truth = np.zeros(10, bool)
    truth[[1, 2, 3]] = True
    true_labels = ORIGINAL.copy()
    true_labels[[1, 2, 3]] = [0, 0, 1]
    log.record([1, 2], "relabel", label=[0, 1])   # 1 fixed, 2 relabeled wrongly
    log.record([3], "keep")
    log.record([5], "drop")                       # a false alarm
    outcome = review_outcome(log.effective(10, ORIGINAL), truth, true_labels)
    assert outcome == {"errors": 3, "decided": 4, "caught": 2, "dropped_errors": 0, "kept_errors": 1,
                       "false_alarms": 1, "fixed": 1}
