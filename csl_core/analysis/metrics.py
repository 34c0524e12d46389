"""Detection metrics: how well a suspicion score ranks the true positives first. Pure numpy.

Every function takes ``truth`` (boolean, ``True`` = positive, e.g. a flipped label) and ``score``
(higher = more suspicious) and follows scikit-learn's definitions, so the numbers agree with
``roc_auc_score`` and ``average_precision_score`` to floating-point precision.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd


def _validate(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if truth.shape != score.shape:
        raise ValueError(f"truth has {truth.size} entries, score {score.size}; they must match")
    if np.isnan(score).any():
        raise ValueError(f"score has {int(np.isnan(score).sum())} NaN entries; rank them explicitly first")
    positives = int(truth.sum())
    if positives == 0 or positives == truth.size:
        raise ValueError("the metric needs at least one positive and one negative sample")
    return truth, score


def _roc_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive counts at each distinct threshold, highest threshold first."""
    order = np.argsort(-score, kind="mergesort")
    score, truth = score[order], truth[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), truth.size - 1]
    true_positives = np.cumsum(truth)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    return false_positives, true_positives, score[last_of_tie]


def roc_curve(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` from (0, 0) to (1, 1), one point per distinct score."""
    truth, score = _validate(truth, score)
    fp, tp, _ = _roc_points(truth, score)
    fpr = np.r_[0.0, fp / (truth.size - truth.sum())]
    tpr = np.r_[0.0, tp / truth.sum()]
    return fpr, tpr


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half, as in ``sklearn.metrics.roc_auc_score``)."""
    fpr, tpr = roc_curve(truth, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def aupr(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall gained) x precision, as
    ``sklearn.metrics.average_precision_score`` (no interpolation)."""
    truth, score = _validate(truth, score)
    fp, tp, _ = _roc_points(truth, score)
    precision = tp / (tp + fp)
    recall = tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(truth: np.ndarray, score: np.ndarray, tpr_level: float = 0.95) -> float:
    """The smallest false-positive rate at which at least ``tpr_level`` of the positives are found."""
    if not 0.0 < tpr_level <= 1.0:
        raise ValueError(f"tpr_level must be in (0, 1], got {tpr_level}")
    fpr, tpr = roc_curve(truth, score)
    return float(fpr[np.searchsorted(tpr, tpr_level - 1e-12, side="left")])


def fpr_at_95_tpr(truth: np.ndarray, score: np.ndarray) -> float:
    """FPR at 95% TPR: the share of clean samples a reviewer wades through to find 95% of the bad ones."""
    return fpr_at_tpr(truth, score, 0.95)


def precision_at_k(truth: np.ndarray, score: np.ndarray, k: int | None = None) -> float:
    """Share of positives among the ``k`` highest scores (``k`` = number of positives by default).

    Ties at the cut are broken by sample order, as a reviewer reading a stably sorted list sees them.
    """
    truth, score = _validate(truth, score)
    k = int(truth.sum()) if k is None else int(k)
    if not 1 <= k <= truth.size:
        raise ValueError(f"k must be between 1 and {truth.size}, got {k}")
    top = np.argsort(-score, kind="stable")[:k]
    return float(truth[top].mean())


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, most suspicious first (ties by sample order)."""
    score = np.asarray(score, dtype=np.float64)
    return np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:k]


METRICS = {"auroc": auroc, "aupr": aupr, "fpr_at_95_tpr": fpr_at_95_tpr, "precision_at_k": precision_at_k}


def detection_metrics(truth: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Every metric in :data:`METRICS` for one score."""
    return detection_report(truth, score)[0]


def detection_report(truth: np.ndarray, score: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Every metric in :data:`METRICS` and the ROC curve ``(fpr, tpr)``, from a single sort of ``score``
    (what a dashboard wants for a million samples and a dozen scores)."""
    truth, score = _validate(truth, score)
    # Every metric but precision at k depends only on tie groups, not on the order inside them, so an
    # unstable sort (twice as fast at 1M samples) does; the tie at the cut is settled below.
    order = np.argsort(-score)
    ranked_truth, ranked_score = truth[order], score[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked_score)), truth.size - 1]
    found = np.cumsum(ranked_truth)
    tp = found[last_of_tie]
    fp = (last_of_tie + 1) - tp
    positives = int(truth.sum())
    fpr = np.r_[0.0, fp / (truth.size - positives)]
    tpr = np.r_[0.0, tp / positives]
    metrics = {
        "auroc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)),
        "aupr": float(np.sum(np.diff(np.r_[0.0, tp / positives]) * (tp / (tp + fp)))),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95 - 1e-12, side="left")]),
        "precision_at_k": _found_in_top(truth, order, last_of_tie, found, positives) / positives,
    }
    return metrics, fpr, tpr


def _found_in_top(truth: np.ndarray, order: np.ndarray, last_of_tie: np.ndarray, found: np.ndarray, k: int) -> float:
    """Positives among the top ``k`` of ``order`` (sorted by score, ties in any order) with ties at the
    cut broken by sample order, as :func:`precision_at_k` breaks them."""
    group = int(np.searchsorted(last_of_tie, k - 1))  # the tie group holding rank k - 1
    start = int(last_of_tie[group - 1]) + 1 if group else 0
    before = int(found[start - 1]) if start else 0
    members = np.sort(order[start: int(last_of_tie[group]) + 1])
    return float(before + truth[members[: k - start]].sum())


def evaluate_scores(scores, truth: np.ndarray, *, roc_points: int = 300, workers: int | None = None) -> dict:
    """How well every score of a run (:data:`csl_core.analysis.scores.SCORES`) ranks ``truth`` first.

    Returns ``{"scores": [{"score", "auroc", "aupr", "fpr_at_95_tpr", "precision_at_k"}, ...] best AUROC
    first, "roc_fpr": [roc_points grid], "roc_tpr": {score: [TPR on that grid]}}``, plain JSON types
    (a thinned ROC curve is what a plot needs at any data size). Scores the run lacks are left out; NaN
    (a sample never seen) ranks least suspicious. ``workers`` threads share the sorts (numpy sorts
    without the GIL); default up to 4.
    """
    from .scores import SCORES, suspicion

    truth = np.asarray(truth, dtype=bool)
    grid = np.linspace(0.0, 1.0, roc_points)
    top = np.finfo(np.float64).max

    def one(method: str):
        try:
            values = suspicion(scores, method)
        except ValueError:
            return None  # this run lacks what the score needs
        values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf, posinf=top, neginf=-top)
        report, fpr, tpr = detection_report(truth, values)
        return {"score": method, **report}, np.interp(grid, fpr, tpr)

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        results = [r for r in pool.map(one, SCORES) if r is not None]
    results.sort(key=lambda r: -r[0]["auroc"])
    return {"scores": [row for row, _ in results], "roc_fpr": grid.tolist(),
            "roc_tpr": {row["score"]: curve.tolist() for row, curve in results}}


def errors_found(truth: np.ndarray, score: np.ndarray, *, up_to: int | None = None, points: int = 400
                 ) -> tuple[np.ndarray, np.ndarray]:
    """How many positives a person finds after reviewing the top ``k`` samples by ``score``.

    Returns ``(k, found)``, both int64 of at most ``points`` + 1 entries, ``k`` increasing from 0 to
    ``up_to`` (default: every sample). Ties are broken by sample order, as the review queue does.
    """
    truth, score = _validate(truth, score)
    up_to = len(truth) if up_to is None else int(min(max(up_to, 1), len(truth)))
    order = np.argsort(-score, kind="stable")[:up_to]
    found = np.concatenate([[0], np.cumsum(truth[order], dtype=np.int64)])
    k = np.unique(np.linspace(0, up_to, min(points, up_to) + 1).round().astype(np.int64))
    return k, found[k]


def review_outcome(effective: pd.DataFrame, is_error: np.ndarray, true_labels: np.ndarray | None = None
                   ) -> dict[str, int]:
    """How the person's decisions fared against known errors (injected noise, a benchmark's truth).

    ``caught``: true errors relabeled or dropped; ``fixed``: relabeled to the true label;
    ``false_alarms``: correct samples relabeled or dropped; ``kept_errors``: errors marked keep.
    """
    is_error = np.asarray(is_error, dtype=bool)
    action = effective["action"].to_numpy(object)
    if len(action) != len(is_error):
        raise ValueError(f"{len(action)} decision states but {len(is_error)} truth entries")
    changed = np.isin(action, ("relabel", "drop"))
    outcome = {
        "errors": int(is_error.sum()),
        "decided": int(np.isin(action, ("keep", "relabel", "drop")).sum()),
        "caught": int((is_error & changed).sum()),
        "dropped_errors": int((is_error & (action == "drop")).sum()),
        "kept_errors": int((is_error & (action == "keep")).sum()),
        "false_alarms": int((~is_error & changed).sum()),
    }
    if true_labels is not None:
        fixed = is_error & (action == "relabel") & (effective["label"].to_numpy() == np.asarray(true_labels))
        outcome["fixed"] = int(fixed.sum())
    return outcome
