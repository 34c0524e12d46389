"""p_wrong, the one count and its interval, the audit, and the suggested cleaning, on synthetic cases whose truth
is known (the benchmark runs are measured by scripts/bench_trust.py, docs/bench/trust.md)."""
from __future__ import annotations

import numpy as np
import pytest

from csl_core.analysis.audit import MIN_ANSWERS, audit_sample, estimate_with_answers, strata
from csl_core.analysis.cleaning import plan_from_probabilities, relabel_fixes
from csl_core.analysis.noise_rate import answers_from_actions
from csl_core.analysis.trust import LIKELIHOOD, MODEL_SPREAD, p_wrong, wrong_count
from csl_core.bench.trust import audit_trials, calibration, cleaning_outcome


def _evidence_case(rate: float, n: int = 20000, classes: int = 10, seed: int = 0):
    """A mixture whose likelihood ratio is the one p_wrong assumes: relative evidence on a grid, right labels
    drawn from ``f_r``, wrong ones from ``f_w = f_r * LR`` (``f_r`` tilted so that ``f_w`` sums to 1), a share
    ``rate`` of them wrong."""
    rng = np.random.default_rng(seed)
    x = np.array([0.0, -0.5, -1.0, -2.0, -3.0, -4.0])
    lr = np.exp(LIKELIHOOD["intercept"] + LIKELIHOOD["slope"] * x)
    base = np.array([0.8, 0.1, 0.05, 0.03, 0.015, 0.005])
    lo, hi = -20.0, 20.0
    for _ in range(100):
        t = (lo + hi) / 2
        f_r = base * np.exp(t * x)
        f_r /= f_r.sum()
        lo, hi = (t, hi) if (f_r * lr).sum() > 1 else (lo, t)
    f_w = f_r * lr / (f_r * lr).sum()
    wrong = rng.random(n) < rate
    grid = np.where(wrong, rng.choice(len(x), n, p=f_w), rng.choice(len(x), n, p=f_r))
    labels = rng.integers(0, classes, n)
    return 0.8 * np.exp(x[grid]), labels, wrong


@pytest.mark.parametrize("rate", [0.04, 0.2, 0.4])
def test_p_wrong_is_calibrated_and_sums_to_the_count_where_the_model_holds(rate):
    g, labels, wrong = _evidence_case(rate)
    p = p_wrong(g, labels)
    assert ((0 <= p) & (p <= 1)).all()
    assert calibration(p, wrong)["ece"] < 0.03
    count = wrong_count(p)
    assert abs(count.count - wrong.sum()) <= 0.1 * wrong.sum()
    assert count.count == round(p.sum()) and count.answers == 0 and count.text().endswith("from the model)")
    assert abs(count.low - count.count * MODEL_SPREAD[0]) <= 2 and count.low <= wrong.sum() <= count.high


def test_a_label_with_less_evidence_than_its_class_is_likelier_wrong():
    labels = np.zeros(5, dtype=int)
    p = p_wrong(np.array([0.9, 0.9, 0.9, 0.3, 0.01]), labels)
    assert p[0] == p[1] == p[2] < p[3] < p[4]


def test_audit_samples_every_stratum_and_every_prefix_is_spread_over_them():
    rng = np.random.default_rng(1)
    p = rng.beta(0.2, 2.0, 20000)
    asked = audit_sample(p, 100, seed=3)
    assert len(asked) == len(set(asked.tolist())) == 100
    assert set(strata(p[asked])) == set(strata(p))           # at least one from every non-empty stratum
    first = strata(p[asked[:40]])
    assert len(set(first)) >= 6                               # a person who stops at 40 leaves a spread sample
    assert np.array_equal(audit_sample(p, 100, seed=3), asked)   # the same run and seed ask the same questions
    decided = np.zeros(len(p), dtype=bool)
    decided[asked[:10]] = True
    assert not set(audit_sample(p, 100, seed=3, exclude=decided).tolist()) & set(asked[:10].tolist())


@pytest.mark.parametrize("shift", [0.0, 1.0, -1.0])
def test_the_audit_interval_covers_the_truth_even_when_the_model_is_off(shift):
    """A model off by a factor of ~e (shift 1) in its odds: a reviewer's 100 answers bring the count back, and
    the 90% interval holds the true count in most audits."""
    rng = np.random.default_rng(7)
    p = rng.beta(0.3, 3.0, 5000)
    z = np.log(p) - np.log1p(-p)
    wrong = rng.random(len(p)) < 1 / (1 + np.exp(-(z + shift)))
    result = audit_trials(p, wrong, sizes=(40, 100), trials=40)
    assert result[100]["coverage"] >= 0.8
    assert abs(result[100]["count_over_truth_median"] - 1) < 0.15
    assert result[100]["width_median"] < result[40]["width_median"]     # more answers, a narrower interval


def test_answers_come_from_decisions_and_need_enough_of_them():
    actions = np.array(["undecided", "keep", "relabel", "drop", "undecided"], dtype=object)
    answered, wrong = answers_from_actions(actions)
    assert answered.tolist() == [1, 2, 3] and wrong.tolist() == [False, True, True]
    p = np.full(1000, 0.1)
    few = wrong_count(p, np.arange(MIN_ANSWERS - 1), np.ones(MIN_ANSWERS - 1, dtype=bool))
    assert few.answers == 0 and few.count == 100           # too few answers: the model's count
    many = wrong_count(p, np.arange(60), np.ones(60, dtype=bool))   # every answer says wrong
    assert many.answers == 60 and many.count > 300 and many.text().endswith("from your 60 answers)")
    assert many.p_wrong[:60].tolist() == [1.0] * 60
    with pytest.raises(ValueError, match="answers"):
        estimate_with_answers(p, np.arange(3), np.ones(2, dtype=bool))


def test_the_cleaning_acts_only_where_its_action_is_likely_right_and_says_how_many_are():
    p = np.array([0.995, 0.995, 0.95, 0.5, 0.99])
    fixes = np.array([0.95, 0.5, 0.92, 0.2, 0.95])
    given = np.array([0, 0, 1, 1, 2])
    suggested = np.array([1, 1, 2, 0, 2])       # sample 4's suggestion is its own label: nothing to relabel to
    plan = plan_from_probabilities(p, fixes, given, suggested)
    assert plan.action.tolist() == ["relabel", "drop", "relabel", "keep", "drop"]
    assert plan.label.tolist() == [1, 0, 2, 1, 2]
    assert plan.expected_right == pytest.approx(0.95 + 0.995 + 0.92 + 0.99)
    only = plan_from_probabilities(p, fixes, given, suggested, eligible=np.array([False, True, True, True, True]))
    assert only.action[0] == "keep"
    outcome = cleaning_outcome(plan.action, plan.label, given, np.array([1, 0, 2, 1, 1]))
    assert outcome["fixes"] == 3 and outcome["harms"] == 1 and outcome["precision"] == pytest.approx(0.75)


def test_a_relabel_is_likelier_to_fix_where_the_suggestion_outweighs_the_label_and_labels_are_often_wrong():
    s = np.array([0.9, 0.6, 0.9])
    g = np.array([0.05, 0.3, 0.05])
    low, high = relabel_fixes(s, g, 0.05), relabel_fixes(s, g, 0.4)
    assert low[0] > low[1] and (high > low).all()


def test_an_accepted_suggested_cleaning_is_not_a_persons_answer():
    """The tool's own plan, once accepted, must not make the count say "from your N answers" (nor re-calibrate it
    with its own guesses); the person's decisions beside it still count."""
    from csl_core.analysis.noise_rate import CLEANING_SOURCE

    actions = np.array(["relabel"] * 30 + ["keep"] * 25 + ["undecided"] * 45, dtype=object)
    sources = np.array([CLEANING_SOURCE] * 30 + ["focused-review"] * 25 + [""] * 45, dtype=object)
    answered, wrong = answers_from_actions(actions, sources)
    assert answered.tolist() == list(range(30, 55)) and not wrong.any()
    p = np.full(100, 0.3)
    assert wrong_count(p, *answers_from_actions(actions[:30], sources[:30])).answers == 0
