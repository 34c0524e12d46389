"""#29 (4): the suggested cleaning (Export) and the class-pair ticks (Class pairs) are applied only over the
decisions they were drawn from: a second tab that drew the same page cannot apply them again, a decision made
meanwhile in another tab is never overridden, and Undo restores every sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("no_magic")


@pytest.fixture()
def run(runs_dir, demo_run, copy_demo) -> Path:
    path = runs_dir / "tabs"
    copy_demo(path)
    for leftover in path.glob("decisions.sqlite*"):
        leftover.unlink()
    return path


def _tab(run: Path, page: str, open_app) -> AppTest:
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(run)).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _undecided(run: Path) -> np.ndarray:
    store = RunStore(run)
    return (DecisionLog(run).effective(store.num_samples, store.samples()["label"])["action"] == "undecided").to_numpy()


def test_a_second_tab_cannot_apply_the_suggested_cleaning_again_and_undo_restores(run, open_app):
    first, second = _tab(run, "pages/export.py", open_app), _tab(run, "pages/export.py", open_app)
    assert not first.button(key="clean_accept").disabled
    first.button(key="clean_accept").click().run()
    assert not _undecided(run).all()
    second.button(key="clean_accept").click().run()
    assert not second.exception
    assert any("changed since" in e.value for e in second.error)
    assert len(DecisionLog(run).batches()) == 1
    first.button(key="clean_undo").click().run()
    assert _undecided(run).all()


def test_the_cleaning_never_overrides_a_decision_made_meanwhile_in_another_tab(run, open_app):
    page = _tab(run, "pages/export.py", open_app)
    n = RunStore(run).num_samples
    DecisionLog(run).record(range(n), "keep", source="elsewhere", tab="other")   # every sample, the plan's too
    page.button(key="clean_accept").click().run()
    assert not page.exception
    assert any("changed since" in e.value for e in page.error)
    store = RunStore(run)
    effective = DecisionLog(run).effective(n, store.samples()["label"])
    assert (effective["action"] == "keep").all() and len(DecisionLog(run).batches()) == 1


def test_class_pair_ticks_are_not_applied_over_a_decision_made_meanwhile(run, open_app):
    page = _tab(run, "pages/pairs.py", open_app)
    button = page.button(key="pair_accept")
    assert not button.disabled, "the demo run has a confusion cell with undecided suspects"
    n = RunStore(run).num_samples
    DecisionLog(run).record(range(n), "drop", source="elsewhere", tab="other")
    button.click().run()
    assert not page.exception
    assert any("changed since" in e.value for e in page.error)
    effective = DecisionLog(run).effective(n, RunStore(run).samples()["label"])
    assert (effective["action"] == "drop").all() and len(DecisionLog(run).batches()) == 1


def test_accepting_the_cleaning_on_a_read_only_run_says_so(run, monkeypatch, open_app):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(run) in str(p))
                        else real_access(p, mode, **kw))          # as a folder of another user (tests run as root)
    page = _tab(run, "pages/export.py", open_app)
    assert not page.button(key="clean_accept").disabled
    page.button(key="clean_accept").click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert any("read-only" in e.value for e in page.error)
    assert not (run / "decisions.sqlite").exists()
