"""The decision log: append-only, undo as a row, effective state, concurrent writers."""
from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from csl_core.analysis.metrics import review_outcome
from csl_core.run import decisions
from csl_core.run.decisions import Decision, DecisionLog


@pytest.fixture()
def run_dir(tmp_path, make_run):
    """A run folder as the decision log reads it: 10 samples, 3 classes."""
    return make_run(tmp_path / "run", n=10, classes=("a", "b", "c"), finished=0).path


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


def test_tabs_opening_a_new_log_together(tmp_path, make_run):
    """Several tabs opening a run's log for the first time at the same moment all get it: creating the
    file and switching it to WAL is the step SQLite refuses at once ("database is locked")."""
    for trial in range(40):
        run = make_run(tmp_path / f"run{trial}", n=10, classes=("a", "b", "c"), finished=0).path
        start = threading.Barrier(4)

        def tab(k, run=run, start=start):   # this trial's folder, bound now
            start.wait()
            DecisionLog(run).record([k], "drop", source=f"tab{k}")

        errors = _in_tabs(tab, 4)
        assert not errors, f"trial {trial}: {errors}"
        assert DecisionLog(run).revision() == 4


def test_one_batch_holds_several_actions_and_one_undo_takes_them_all(run_dir):
    log = DecisionLog(run_dir)
    earlier = log.record([4], "relabel", label=2)
    click = log.record_batch([Decision([1, 2], "drop"), Decision([3], "keep"), Decision([4], "relabel", 0),
                              Decision([1, 2, 3], "not-duplicate")], source="duplicates", note="keep 3")
    state = log.effective(10, ORIGINAL)
    assert state.loc[[1, 2], "action"].tolist() == ["drop", "drop"] and state.loc[3, "action"] == "keep"
    assert (state.loc[4, "action"], state.loc[4, "label"]) == ("relabel", 0)
    batches = log.batches().set_index("batch")
    assert batches.loc[click, "action"] == "drop+keep+relabel+not-duplicate" and batches.loc[click, "samples"] == 7
    history = log.history()
    assert sorted(history.loc[history["action"] == "not-duplicate", "sample"].tolist()) == [1, 2, 3]

    assert log.undo(source="duplicates") == click
    state = log.effective(10, ORIGINAL)
    assert (state.loc[[1, 2, 3], "action"] == "undecided").all()
    assert (state.loc[4, "action"], state.loc[4, "label"]) == ("relabel", 2)   # the batch before it
    assert log.undo() == earlier


def test_a_bad_decision_in_a_batch_writes_nothing(run_dir):
    log = DecisionLog(run_dir)
    with pytest.raises(ValueError, match="needs a label"):
        log.record_batch([Decision([1], "drop"), Decision([2], "relabel")])
    with pytest.raises(ValueError, match="at least one action"):
        log.record_batch([])
    assert log.revision() == 0


def test_a_log_written_before_batches_held_several_actions_reads_the_same(run_dir):
    """A version-1 log (the action on the batch only) is migrated in place when first opened."""
    with sqlite3.connect(run_dir / "decisions.sqlite") as db:
        db.executescript("""
            CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL,
                source TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
                undoes INTEGER REFERENCES batches(id));
            CREATE TABLE decisions (batch INTEGER NOT NULL REFERENCES batches(id), sample INTEGER NOT NULL,
                label INTEGER);
            INSERT INTO batches(action, source, created) VALUES ('relabel', 'review', 1.0), ('drop', 'review', 2.0),
                ('keep', 'gallery', 3.0);
            INSERT INTO batches(action, created, undoes) VALUES ('undo', 4.0, 3);
            INSERT INTO decisions VALUES (1, 5, 0), (1, 6, 0), (2, 7, NULL), (3, 5, NULL);
        """)
    log = DecisionLog(run_dir)
    state = log.effective(10, ORIGINAL)
    assert (state.loc[5, "action"], state.loc[5, "label"]) == ("relabel", 0)   # the keep on 5 was undone
    assert state.loc[7, "action"] == "drop" and state.loc[6, "action"] == "keep"  # relabel to its own label
    assert log.history()["action"].tolist() == ["relabel", "relabel", "drop", "keep", "undo"]
    log.record_batch([Decision([8], "drop"), Decision([9], "keep")])
    assert log.effective(10, ORIGINAL).loc[[8, 9], "action"].tolist() == ["drop", "keep"]
    with sqlite3.connect(run_dir / "decisions.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == decisions.SCHEMA_VERSION


def test_the_schema_is_set_up_once_per_process(run_dir, monkeypatch):
    DecisionLog(run_dir).record([1], "drop")
    calls = []
    monkeypatch.setattr(DecisionLog, "_create", lambda self: calls.append(self.path))
    for _ in range(3):
        assert DecisionLog(run_dir).revision() == 1
    assert calls == []
    (run_dir / "decisions.sqlite").unlink()       # a new file (a run folder replaced) is set up again
    for leftover in run_dir.glob("decisions.sqlite-*"):
        leftover.unlink()
    assert DecisionLog(run_dir).revision() == 0     # viewing creates nothing ...
    assert calls == [] and not (run_dir / "decisions.sqlite").exists()
    DecisionLog(run_dir)._set_up()                  # ... the first decision sets the new file up
    assert len(calls) == 1


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
