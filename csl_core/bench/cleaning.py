"""Cleaning, measured by retraining: act on one detection run's suggested cleaning, train again with the
same recipe on the cleaned labels, and compare the clean test accuracy with training on the noisy and on
the trusted labels (the share of the lost accuracy recovered, docs/bench/cleaning.md).

Also how right the run's suggestions are and how close its count of wrong labels comes, against the
trusted labels. Used by ``bench-real --clean``; pure apart from the training callable it is given.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..analysis.cleaning import RELABEL_CONFIDENCE, CleaningPlan, plan_cleaning, plan_digest, suggested_cleaning
from ..analysis.scores import default_score, suspicion
from ..data import TrainingSet
from .surgery import relabel, select_rows

# The cleanings a retrain measures: the suggested one (act where the action is at least CLEAN_AT likely right:
# analysis/cleaning.py), relabel-or-drop on every sample whose suggestion outweighs its label (a per-sample
# rule), and confident learning's prune-and-retrain (drop the count's most suspicious samples).
CLEANINGS = ("suggested", "outweighs", "drop")
TOP_SHARE = 0.02  # "the top of the queue" where suggestion accuracy is measured: its first 2%


def cleaning_plans(scores: pd.DataFrame, budget: int, *, relabel_at: float = RELABEL_CONFIDENCE
                   ) -> dict[str, CleaningPlan]:
    """The plans of :data:`CLEANINGS` for a run's scores table and a budget (the run's count)."""
    ranking = suspicion(scores, default_score(scores))
    given = scores["label"].to_numpy(np.int64)
    suggested = scores["suggested_label"].to_numpy(np.int64)
    confidence = scores["suggested_confidence"].to_numpy(np.float64)
    outweighs = confidence > scores["label_evidence"].to_numpy(np.float64)
    return {"suggested": suggested_cleaning(scores),
            "outweighs": plan_cleaning(ranking, given, suggested, confidence, int(outweighs.sum()),
                                       relabel_at=relabel_at, eligible=outweighs),
            "drop": plan_cleaning(ranking, given, suggested, confidence, budget, drop_only=True)}


def cleaned_set(training_set: TrainingSet, plan: CleaningPlan) -> TrainingSet:
    """``training_set`` after ``plan``: relabelled rows take their new label, dropped rows leave."""
    relabelled = plan.rows("relabel")
    cleaned = relabel(training_set, relabelled, plan.label[relabelled]) if len(relabelled) else training_set
    return select_rows(cleaned, np.flatnonzero(plan.action != "drop"))


def plan_outcome(plan: CleaningPlan, given: np.ndarray, true: np.ndarray) -> dict:
    """What ``plan`` does against the trusted labels: relabels (right ones among them), drops (truly wrong
    among them), and the wrong labels left in the cleaned set."""
    given, true = np.asarray(given, dtype=np.int64), np.asarray(true, dtype=np.int64)
    wrong = given != true
    relabelled, dropped = plan.action == "relabel", plan.action == "drop"
    kept_rows = ~dropped
    return {"budget": plan.budget, "relabel": int(relabelled.sum()),
            "relabel_right": int((plan.label[relabelled] == true[relabelled]).sum()),
            "relabel_of_correct": int((relabelled & ~wrong).sum()),
            "drop": int(dropped.sum()), "drop_wrong": int((dropped & wrong).sum()),
            "wrong_before": int(wrong.sum()), "wrong_after": int((plan.label[kept_rows] != true[kept_rows]).sum())}


def suggestion_accuracy(scores: pd.DataFrame, true: np.ndarray, *, top_share: float = TOP_SHARE,
                        high: float = RELABEL_CONFIDENCE) -> dict:
    """How often the suggestion is the trusted label, over the truly mislabeled samples: in the top
    ``top_share`` of the default ranking, over all of them, and among those whose suggestion's confidence
    reaches ``high`` (with the share of them that reach it)."""
    true = np.asarray(true, dtype=np.int64)
    given = scores["label"].to_numpy(np.int64)
    suggested = scores["suggested_label"].to_numpy(np.int64)
    confidence = scores["suggested_confidence"].to_numpy(np.float64)
    wrong = given != true
    right = suggested == true
    order = np.argsort(-np.nan_to_num(suspicion(scores, default_score(scores)), nan=-np.inf), kind="stable")
    top = order[: max(1, int(round(top_share * len(order))))]
    top_wrong = top[wrong[top]]
    sure = wrong & (confidence >= high)

    def share(mask) -> float | None:
        return float(np.mean(right[mask])) if np.any(mask) else None

    return {"top_share": top_share, "top_wrong": int(len(top_wrong)), "top": share(top_wrong),
            "all": share(wrong), "high_at": high, "high": share(sure),
            "high_coverage": float(sure.sum() / max(1, wrong.sum()))}


def retrain_cleanings(train: Callable[[TrainingSet, str], float | None], training_set: TrainingSet,
                      plans: dict[str, CleaningPlan], name: str, *, log=print) -> dict:
    """Retrain once per plan (``train(cleaned_set, run_name)`` -> clean test accuracy); each run is named
    after its plan's digest, so a rerun reuses a retrain only where the plan is the same."""
    samples = training_set.samples
    given = samples["label"].to_numpy(np.int64)
    true = samples["true_label"].to_numpy(np.int64) if "true_label" in samples else given
    out = {}
    for cleaning, plan in plans.items():
        run_name = f"{name}-clean-{cleaning}-{plan_digest(plan)}"
        log(f"{name}: retraining after the {cleaning} cleaning ({plan.counts()})")
        out[cleaning] = {**plan_outcome(plan, given, true), "run": run_name,
                         "test_accuracy": train(cleaned_set(training_set, plan), run_name)}
    return out


def recovered(accuracy: float | None, noisy: float | None, trusted: float | None) -> float | None:
    """``(accuracy - noisy) / (trusted - noisy)``: the share of the accuracy lost to noise that a cleaning
    wins back (None where a figure is missing or nothing was lost)."""
    if accuracy is None or noisy is None or trusted is None or trusted <= noisy:
        return None
    return (accuracy - noisy) / (trusted - noisy)
