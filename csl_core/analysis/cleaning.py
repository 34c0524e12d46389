"""The suggested cleaning: what to do with each sample of one detection run (pure, no files).

It acts only where the evidence is strong enough for the action to be right: a sample is **relabelled** to
its suggested label where the probability that the label is wrong *and* the suggestion is its true class
reaches :data:`CLEAN_AT` (:func:`relabel_fixes`), **dropped** where its ``p_wrong`` (:mod:`csl_core.analysis.trust`,
re-estimated from the person's answers where there are enough) reaches :data:`DROP_AT` but no class is that
likely right, and **kept** otherwise (left for review). The plan says before it is applied how many of its
actions are expected to be right (the sum of their probabilities). ``bench-real --clean`` retrains on it
(docs/bench/cleaning.md), the Export page's "accept the suggested cleaning" records it as one undoable batch,
and ``export --cleaning suggested`` writes it as a dry run (docs/bench/trust.md measures it against truth).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CLEANING_ACTIONS = ("relabel", "drop", "keep")
# The suggestion's confidence from which a suspect is relabelled rather than dropped: the level at which
# the suggestion was right on at least 95% of the truly mislabeled samples of every case measured
# (docs/bench/cleaning.md).
RELABEL_CONFIDENCE = 0.7
# The probability of being right from which the suggested cleaning relabels a sample (docs/bench/trust.md).
CLEAN_AT = 0.9
# ... and the probability that the label is wrong from which it drops one no class is that likely right for.
DROP_AT = 0.99
# P(relabelling to the suggestion fixes a wrong label) = sigmoid(logit(share of wrong labels) + a + b * (s - g)
# + c * logit(s)), with s the suggestion's and g the given label's share of the class evidence and the share of
# wrong labels the run's count over its samples: fitted across the benchmark runs with known truth
# (scripts/bench_trust.py; docs/bench/trust.md).
RELABEL_FIX = (0.718, 1.914, 1.335)


@dataclass(frozen=True)
class CleaningPlan:
    """One action per sample: ``action`` ``(N,)`` one of :data:`CLEANING_ACTIONS`, ``label`` ``(N,)`` the
    label after cleaning (the suggestion where relabelled, else the given label), ``budget`` how many of
    the most suspicious samples were acted on."""

    action: np.ndarray
    label: np.ndarray
    budget: int
    right: np.ndarray | None = None  # (N,) each action's probability of being right (0 where kept)

    @property
    def expected_right(self) -> float:
        """How many of the plan's actions are expected to be right (the sum of their probabilities)."""
        return float(np.sum(self.right)) if self.right is not None else float("nan")

    def rows(self, action: str) -> np.ndarray:
        """The samples the plan gives ``action``, in sample order."""
        return np.flatnonzero(self.action == action)

    def counts(self) -> dict[str, int]:
        """``{action: samples}`` for every action (zeros included)."""
        return {a: int((self.action == a).sum()) for a in CLEANING_ACTIONS}

    def by_class(self, given: np.ndarray, classes: list[str]) -> pd.DataFrame:
        """Per class (by the given label): samples, relabelled away, dropped, kept, relabelled into it, and
        its size after cleaning; the last row sums them."""
        given = np.asarray(given, dtype=np.int64)
        k = len(classes)

        def count(mask: np.ndarray, labels: np.ndarray = given) -> np.ndarray:
            return np.bincount(labels[mask], minlength=k)

        relabelled = self.action == "relabel"
        table = pd.DataFrame({
            "class": list(classes),
            "samples": count(np.ones(len(given), dtype=bool)),
            "relabel (away)": count(relabelled),
            "drop": count(self.action == "drop"),
            "keep": count(self.action == "keep"),
            "relabel (into)": count(relabelled, self.label),
            "after": count(self.action != "drop", self.label),
        })
        table.loc[len(table)] = ["all", *table.drop(columns="class").sum().tolist()]
        return table


def _one_per_sample(**arrays: np.ndarray) -> int:
    """The number of samples, when every array has one entry per sample; a ValueError naming them otherwise."""
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{', '.join(sizes)} need one entry per sample; got "
                         f"{', '.join(str(v) for v in sizes.values())}")
    return next(iter(sizes.values()))


def plan_cleaning(suspicion: np.ndarray, given: np.ndarray, suggested: np.ndarray, confidence: np.ndarray,
                  budget: int, *, relabel_at: float = RELABEL_CONFIDENCE, drop_only: bool = False,
                  eligible: np.ndarray | None = None) -> CleaningPlan:
    """The cleaning of one run: the ``budget`` most suspicious samples (``suspicion`` ``(N,)``, high =
    suspicious, NaN last) among the ``eligible`` ones (``(N,)`` bool, default all; e.g. those a person has
    not decided on) are relabelled to ``suggested`` where ``confidence`` reaches ``relabel_at`` and the
    suggestion differs from the given label, else dropped (all dropped with ``drop_only``: confident
    learning's prune-and-retrain); the rest are kept."""
    suspicion, confidence = np.asarray(suspicion, dtype=np.float64), np.asarray(confidence, dtype=np.float64)
    given, suggested = np.asarray(given, dtype=np.int64), np.asarray(suggested, dtype=np.int64)
    n = _one_per_sample(suspicion=suspicion, given=given, suggested=suggested, confidence=confidence)
    if budget < 0:
        raise ValueError(f"the budget must be non-negative, got {budget}")
    if not 0.0 <= relabel_at <= 1.0:
        raise ValueError(f"relabel_at must lie in [0, 1], got {relabel_at}")
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    order = np.argsort(-np.nan_to_num(suspicion, nan=-np.inf), kind="stable")
    top = order[eligible[order]][: int(budget)]
    action = np.full(n, "keep", dtype=object)
    label = given.copy()
    sure = (np.nan_to_num(confidence[top], nan=0.0) >= relabel_at) & (suggested[top] != given[top]) & (not drop_only)
    action[top[sure]] = "relabel"
    label[top[sure]] = suggested[top[sure]]
    action[top[~sure]] = "drop"
    return CleaningPlan(action=action, label=label, budget=len(top))


def plan_digest(plan: CleaningPlan) -> str:
    """A short fingerprint of what ``plan`` does to every sample (names the retrain that trains on it)."""
    import hashlib

    codes = np.array([CLEANING_ACTIONS.index(a) for a in plan.action], dtype=np.int8)
    return hashlib.sha256(codes.tobytes() + np.asarray(plan.label, dtype=np.int64).tobytes()).hexdigest()[:8]


def relabel_fixes(suggested_confidence: np.ndarray, label_evidence: np.ndarray, wrong_share: float) -> np.ndarray:
    """The chance that relabelling each sample to its suggestion fixes a wrong label, ``(N,)``: its label is
    wrong *and* the suggestion is its true class (:data:`RELABEL_FIX`), in a run where ``wrong_share`` of the
    labels are wrong."""
    s = np.clip(np.nan_to_num(np.asarray(suggested_confidence, dtype=np.float64)), 1e-4, 1 - 1e-4)
    g = np.nan_to_num(np.asarray(label_evidence, dtype=np.float64))
    share = float(np.clip(wrong_share, 1e-4, 1 - 1e-4))
    a, b, c = RELABEL_FIX
    z = np.log(share / (1 - share)) + a + b * (s - g) + c * (np.log(s) - np.log1p(-s))
    return 1.0 / (1.0 + np.exp(-z))


def plan_from_probabilities(p_wrong: np.ndarray, fixes: np.ndarray, given: np.ndarray, suggested: np.ndarray, *,
                            at: float = CLEAN_AT, drop_at: float = DROP_AT,
                            eligible: np.ndarray | None = None) -> CleaningPlan:
    """Relabel to ``suggested`` where ``fixes`` (the chance that the relabel fixes a wrong label) reaches ``at``
    and the suggestion differs from the given label, else drop where ``p_wrong`` reaches ``drop_at``, else keep;
    only ``eligible`` samples (``(N,)`` bool, default all) are acted on."""
    p = np.clip(np.nan_to_num(np.asarray(p_wrong, dtype=np.float64)), 0.0, 1.0)
    fixes = np.clip(np.nan_to_num(np.asarray(fixes, dtype=np.float64)), 0.0, 1.0)
    given, suggested = np.asarray(given, dtype=np.int64), np.asarray(suggested, dtype=np.int64)
    n = _one_per_sample(p_wrong=p, fixes=fixes, given=given, suggested=suggested)
    if not (0.0 < at <= 1.0 and 0.0 < drop_at <= 1.0):
        raise ValueError(f"the cleaning's probabilities must lie in (0, 1], got {at} and {drop_at}")
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    relabel = eligible & (fixes >= at) & (suggested != given)
    drop = eligible & ~relabel & (p >= drop_at)
    action = np.full(n, "keep", dtype=object)
    action[relabel], action[drop] = "relabel", "drop"
    label = np.where(relabel, suggested, given)
    right = np.where(relabel, fixes, np.where(drop, p, 0.0))
    return CleaningPlan(action=action, label=label, budget=int(relabel.sum() + drop.sum()), right=right)


def suggested_cleaning(scores: pd.DataFrame, actions: np.ndarray | None = None, *, sources: np.ndarray | None = None,
                       at: float = CLEAN_AT) -> CleaningPlan:
    """The suggested cleaning of a run from its scores table (:func:`plan_from_probabilities` on ``p_wrong``,
    re-estimated from the person's decisions ``actions`` ``(N,)`` where there are enough of them: keep /
    relabel / drop / undecided; ``sources`` ``(N,)`` the log's source of each, see
    :func:`~csl_core.analysis.noise_rate.answers_from_actions`). Only undecided samples are acted on; a run
    without suggestions gets a plan that keeps everything."""
    from .noise_rate import noise_count

    n = len(scores)
    given = scores["label"].to_numpy(np.int64)
    if "suggested_label" not in scores.columns or "suggested_confidence" not in scores.columns:
        return CleaningPlan(action=np.full(n, "keep", dtype=object), label=given.copy(), budget=0,
                            right=np.zeros(n))
    eligible = None if actions is None else np.asarray(actions, dtype=object) == "undecided"
    count = noise_count(scores, actions, sources)
    fixes = relabel_fixes(scores["suggested_confidence"], scores["label_evidence"], count.count / max(n, 1))
    return plan_from_probabilities(count.p_wrong, fixes, given, scores["suggested_label"].to_numpy(np.int64), at=at,
                                   eligible=eligible)
