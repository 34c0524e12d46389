"""The suggested cleaning: what to do with each sample of one detection run (pure, no files).

The most suspicious ``budget`` samples of the ranking (the budget is the run's estimated number of wrong
labels, :func:`csl_core.analysis.noise_rate.estimate_label_noise`) are acted on: **relabel** to the
suggested label where the suggestion is confident (its ``suggested_confidence`` reaches ``relabel_at``),
**drop** where the sample is suspicious but the suggestion unsure; every other sample is **kept**.
``bench-real --clean`` retrains on exactly this plan (docs/bench/cleaning.md), and the Export page's
"accept the suggested cleaning" records it as one undoable batch.
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


@dataclass(frozen=True)
class CleaningPlan:
    """One action per sample: ``action`` ``(N,)`` one of :data:`CLEANING_ACTIONS`, ``label`` ``(N,)`` the
    label after cleaning (the suggestion where relabelled, else the given label), ``budget`` how many of
    the most suspicious samples were acted on."""

    action: np.ndarray
    label: np.ndarray
    budget: int

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


def plan_cleaning(suspicion: np.ndarray, given: np.ndarray, suggested: np.ndarray, confidence: np.ndarray,
                  budget: int, *, relabel_at: float = RELABEL_CONFIDENCE, drop_only: bool = False,
                  eligible: np.ndarray | None = None) -> CleaningPlan:
    """The cleaning of one run: the ``budget`` most suspicious samples (``suspicion`` ``(N,)``, high =
    suspicious, NaN last) among the ``eligible`` ones (``(N,)`` bool, default all; e.g. those a person has
    not decided on) are relabelled to ``suggested`` where ``confidence`` reaches ``relabel_at`` and the
    suggestion differs from the given label, else dropped (all dropped with ``drop_only``: confident
    learning's prune-and-retrain); the rest are kept."""
    suspicion = np.asarray(suspicion, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    suggested = np.asarray(suggested, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(suspicion)
    if not (len(given) == len(suggested) == len(confidence) == n):
        raise ValueError(f"suspicion, given, suggested and confidence need one entry per sample; got {n}, "
                         f"{len(given)}, {len(suggested)} and {len(confidence)}")
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


def suggested_cleaning(scores: pd.DataFrame, actions: np.ndarray | None = None, *,
                       relabel_at: float = RELABEL_CONFIDENCE) -> CleaningPlan:
    """The suggested cleaning of a run from its scores table: the budget is the run's one count of wrong
    labels (:func:`csl_core.analysis.noise_rate.noise_count`), the ranking its default one. Beside a
    person's decisions (``actions`` ``(N,)``: keep / relabel / drop / undecided) only undecided samples are
    acted on, and the budget shrinks by the samples the person has already relabelled or dropped. A run
    without suggestions gets a plan that keeps everything."""
    from .noise_rate import noise_count
    from .scores import default_score, suspicion

    n = len(scores)
    given = scores["label"].to_numpy(np.int64)
    if "suggested_label" not in scores.columns or "suggested_confidence" not in scores.columns:
        return CleaningPlan(action=np.full(n, "keep", dtype=object), label=given.copy(), budget=0)
    budget = noise_count(scores).count
    eligible = None
    if actions is not None:
        actions = np.asarray(actions, dtype=object)
        eligible = actions == "undecided"
        budget = max(0, budget - int(np.isin(actions, ["relabel", "drop"]).sum()))
    return plan_cleaning(suspicion(scores, default_score(scores)), given, scores["suggested_label"].to_numpy(np.int64),
                         scores["suggested_confidence"].to_numpy(np.float64), budget, relabel_at=relabel_at,
                         eligible=eligible)
