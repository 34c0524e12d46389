"""#31: a run opened from its address (a bookmark, a reload after a restart) is writable as from the sidebar;
a run that is read-only says why and what makes it writable, on the sidebar and on Focused review."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
pytestmark = pytest.mark.usefixtures("no_magic")


def test_a_run_opened_from_its_address_takes_decisions_as_from_the_sidebar(demo_copy, open_app):
    at = open_app(run=str(demo_copy))   # a fresh session, no job on this server: as after a restart
    assert at.session_state["run_path"] == str(demo_copy)
    assert not any("read-only" in i.value for i in at.sidebar.info)
    assert not at.sidebar.button   # no gate to pass first
    at.switch_page("pages/review.py").run()
    at.radio(key="rev_scope").set_value("top N of the queue").run()
    at.button(key="rev_keep").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    effective = DecisionLog(demo_copy).effective(RunStore(demo_copy).num_samples,
                                                  RunStore(demo_copy).samples()["label"])
    assert (effective["action"] == "keep").sum() == 10


def test_a_read_only_run_says_why_and_what_makes_it_writable(demo_copy, monkeypatch, open_app):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(demo_copy) in str(p))
                        else real_access(p, mode, **kw))            # as a folder of another user (tests run as root)
    at = open_app(run=str(demo_copy))
    notice = " ".join(i.value for i in at.sidebar.info)
    assert "read-only" in notice and "chmod -R u+w" in notice and demo_copy.name in notice
    at.switch_page("pages/focus.py").run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "read-only" in warning and "chmod -R u+w" in warning
