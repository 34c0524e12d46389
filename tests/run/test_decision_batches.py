"""#29 (4): a bulk action carries the state of the decision log it was computed from; in the transaction that
would append it, a batch recorded since on any of its samples (another tab's decision, an undo, the same plan
applied by a second tab) refuses it, so that it is never applied over what is true now, and Undo restores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from csl_core.errors import CSLError, DecisionsChanged
from csl_core.run.decisions import Decision, DecisionLog

N = 10
LABELS = np.zeros(N, dtype=np.int64)


@pytest.fixture()
def run(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"num_samples": N, "classes": ["a", "b", "c"]}))
    return tmp_path


def _plan():
    return [Decision([1, 2], "relabel", [1, 2]), Decision([3], "drop")]


def test_a_plan_is_refused_when_another_tab_decided_on_one_of_its_samples_meanwhile(run):
    log = DecisionLog(run)
    drawn = log.revision()
    log.record([2], "keep", tab="other")
    with pytest.raises(DecisionsChanged, match="sample 2"):
        log.record_batch(_plan(), tab="this", computed_at=drawn)
    assert isinstance(DecisionsChanged("x"), CSLError)
    effective = log.effective(N, LABELS)
    assert effective.loc[2, "action"] == "keep" and effective.loc[3, "action"] == "undecided"


def test_a_second_tab_cannot_apply_the_plan_again_and_undo_restores_every_sample(run):
    log = DecisionLog(run)
    drawn = log.revision()                                   # both tabs drew the same plan
    log.record_batch(_plan(), tab="first", computed_at=drawn)
    with pytest.raises(DecisionsChanged):
        log.record_batch(_plan(), tab="second", computed_at=drawn)
    assert log.undo(tab="first") is not None
    assert (log.effective(N, LABELS)["action"] == "undecided").all()
    assert len(log.batches()) == 2                           # the plan and its undo: nothing re-applied


def test_an_undo_since_the_plan_refuses_it_and_other_samples_do_not(run):
    log = DecisionLog(run)
    first = log.record([3], "keep", tab="other")
    drawn = log.revision()
    log.record([7], "drop", tab="other")                     # another sample: the plan still holds
    applied = log.record_batch(_plan(), computed_at=drawn)
    log.undo(applied)
    drawn = log.revision()
    log.undo(first)                                          # sample 3 changed back
    with pytest.raises(DecisionsChanged, match="sample 3"):
        log.record_batch(_plan(), computed_at=drawn)
    with pytest.raises(DecisionsChanged):                    # a revision the log never reached: replaced
        log.record([1], "drop", computed_at=log.revision() + 5)
