"""#29 (7): a decision log that relabels a sample to a class the run does not have (or to NULL) is said as
damaged on every page, fragments included (Galleries), never a traceback."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from csl_core.run.decisions import DecisionLog

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
pytestmark = pytest.mark.usefixtures("no_magic")


@pytest.mark.parametrize("label", [99, None])
def test_every_page_says_a_decision_log_with_an_impossible_relabel_is_damaged(demo_copy, open_app, label):
    DecisionLog(demo_copy).record([0], "drop")
    with sqlite3.connect(demo_copy / "decisions.sqlite") as db:
        db.execute("INSERT INTO batches(action, source, note, created, tab) VALUES ('relabel', '', '', 0, '')")
        batch = db.execute("SELECT MAX(id) FROM batches").fetchone()[0]
        db.execute("INSERT INTO decisions(batch, sample, label, action) VALUES (?, 3, ?, 'relabel')", (batch, label))
    at = open_app(run=str(demo_copy))
    said = []
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        said += [e.value for e in at.error]
    assert any("decisions.sqlite is damaged" in text for text in said)
