"""The decision log across tabs: undo in one tab never undoes another's batch; an older log gets the tab column."""
from __future__ import annotations

import numpy as np

from csl_core.run.decisions import DecisionLog


def test_undo_in_one_tab_never_undoes_another_tabs_batch(tmp_path, make_run):
    store = make_run(tmp_path / "run")
    log = DecisionLog(store.path)
    first = log.record([0], "drop", source="galleries", tab="tab-1")
    log.record([1], "drop", source="galleries", tab="tab-2")   # the other tab acts last
    assert log.undo(source="galleries", tab="tab-1") == first
    state = log.effective(6, np.zeros(6, int))["action"].tolist()
    assert state[:2] == ["undecided", "drop"]
    assert log.undo(source="galleries", tab="tab-1") is None  # nothing more of tab 1's
    assert set(log.batches()["tab"]) == {"tab-1", "tab-2"}


def test_an_older_decision_log_gets_the_tab_column(tmp_path, make_run):
    import sqlite3

    store = make_run(tmp_path / "run")
    with sqlite3.connect(store.path / "decisions.sqlite") as db:
        db.executescript("CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, "
                         "source TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', created REAL NOT NULL, "
                         "undoes INTEGER); CREATE TABLE decisions (batch INTEGER NOT NULL, sample INTEGER NOT NULL, "
                         "label INTEGER); INSERT INTO batches(action, created) VALUES ('drop', 0); "
                         "INSERT INTO decisions VALUES (1, 3, NULL);")
    log = DecisionLog(store.path)
    assert log.undo(tab="someone") is None                      # the old batch belongs to no tab
    assert log.undo() == 1
