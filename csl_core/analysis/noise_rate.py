"""Where a person stands: how many labels are likely wrong, and whether the run has memorised them.

Pure functions of a run's arrays (no files). The noise estimate is the confident joint of confident
learning (Northcutt et al., 2021), computed from the run's mean softmax over training instead of
K-fold out-of-sample probabilities: no extra training. A network that memorises its labels makes
those probabilities lean towards the given label, so on a memorised run the estimate is a floor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .suggest import per_class_rows


@dataclass(frozen=True)
class NoiseEstimate:
    """The confident-joint estimate of label noise.

    ``count``: estimated mislabeled samples (off-diagonal of the calibrated joint); ``rate`` =
    ``count / N``; ``flagged``: ``(N,)`` bool, the samples the joint counts off its diagonal (their
    probability of another class clears that class's threshold and beats every other class that
    does); ``joint``: ``(C, C)`` calibrated counts, row = given label, column = estimated true class.
    """

    count: int
    rate: float
    flagged: np.ndarray
    joint: np.ndarray


def estimate_label_noise(labels: np.ndarray, probabilities: np.ndarray) -> NoiseEstimate:
    """Estimate how many of ``labels`` (``(N,)`` int) are wrong from ``probabilities`` (``(N, C)``).

    Class ``j``'s threshold is the mean probability of ``j`` over the samples labelled ``j``; a
    sample counts towards the true class ``j`` with the highest probability among the classes whose
    threshold it reaches. The counts are calibrated so that each row sums to its label's frequency.
    """
    probabilities, labels = per_class_rows(probabilities, labels, "probabilities")
    n, num_classes = probabilities.shape
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    if n == 0:
        return NoiseEstimate(0, 0.0, np.zeros(0, dtype=bool), np.zeros((num_classes, num_classes)))
    label_counts = np.bincount(labels, minlength=num_classes)
    sums = np.zeros(num_classes)
    np.add.at(sums, labels, probabilities[np.arange(n), labels])
    thresholds = np.divide(sums, label_counts, out=np.full(num_classes, np.inf), where=label_counts > 0)
    above = probabilities >= thresholds - 1e-12  # (N, C)
    candidate = np.where(above, probabilities, -np.inf)
    has_candidate = above.any(axis=1)
    true_class = candidate.argmax(axis=1)
    counted = np.zeros((num_classes, num_classes))
    np.add.at(counted, (labels[has_candidate], true_class[has_candidate]), 1)
    row_sums = counted.sum(axis=1, keepdims=True)
    joint = np.divide(counted, row_sums, out=np.zeros_like(counted), where=row_sums > 0) * label_counts[:, None]
    count = int(round(joint.sum() - np.trace(joint)))
    flagged = has_candidate & (true_class != labels)
    return NoiseEstimate(count=count, rate=count / n, flagged=flagged, joint=joint)


MEMORISED_ACCURACY = 0.99


def memorised(train_accuracy: float, noise_rate: float) -> bool:
    """True when the last epoch fits (nearly) every label: training accuracy of at least 99%, or
    above ``1 - noise_rate / 2`` (at least half of the labels the estimate calls wrong). The
    last-epoch loss of a memorised wrong label is low, so it stops separating them, while CSL (the
    loss summed over training) still does. The estimate itself shrinks towards 0 on such a run (its
    probabilities lean towards the given labels), hence the plain accuracy test."""
    return train_accuracy >= MEMORISED_ACCURACY or (noise_rate > 0 and train_accuracy > 1.0 - noise_rate / 2.0)


@dataclass(frozen=True)
class NoiseCount:
    """The one count of wrong labels of a run (:func:`noise_count`): ``count`` samples, ``rate`` =
    ``count / N``, ``flagged`` ``(N,)`` bool the samples it counts, ``basis`` what it rests on, in words."""

    count: int
    rate: float
    flagged: np.ndarray
    basis: str


COUNT_BASIS = ("each sample counts by how far the evidence for its suggested label outweighs the evidence for "
               "its given label (the mean softmax over training and the nearest neighbours' labels): "
               "(s - g) / (s + g) where s > g")


def wrong_label_weights(suggested_confidence: np.ndarray, label_evidence: np.ndarray) -> np.ndarray:
    """How much each sample counts towards the number of wrong labels, ``(N,)`` in [0, 1]: ``(s - g) /
    (s + g)`` where the suggestion's share of the evidence ``s`` outweighs the given label's ``g``, else 0.
    A sample the evidence splits evenly between the two counts about 0, one it gives wholly to the
    suggestion counts 1."""
    s = np.nan_to_num(np.asarray(suggested_confidence, dtype=np.float64))
    g = np.nan_to_num(np.asarray(label_evidence, dtype=np.float64))
    return np.divide(s - g, s + g, out=np.zeros_like(s), where=(s > g) & (s + g > 0))


def noise_count(scores: pd.DataFrame) -> NoiseCount:
    """How many labels of a run are likely wrong: the sum of :func:`wrong_label_weights` over the samples
    (columns ``suggested_confidence`` and ``label_evidence`` of the scores table); ``flagged`` are the
    samples whose suggestion outweighs their given label. Chosen by measurement against the confident joint
    and other estimators on CIFAR-10N, confusable Fashion-MNIST and the demo (docs/bench/cleaning.md). Used
    by ``info``, the Run page, the review budget and the suggested cleaning. A run without suggestions (no
    mean probabilities kept) counts 0."""
    n = len(scores)
    if n == 0 or "suggested_confidence" not in scores.columns or "label_evidence" not in scores.columns:
        return NoiseCount(0, 0.0, np.zeros(n, dtype=bool), COUNT_BASIS)
    weights = wrong_label_weights(scores["suggested_confidence"], scores["label_evidence"])
    count = int(round(weights.sum()))
    return NoiseCount(count, count / n, weights > 0, COUNT_BASIS)


def review_budget(estimate: NoiseCount, ranking: np.ndarray) -> dict:
    """What reviewing the top ``estimate.count`` samples of ``ranking`` (``(N,)``, high = suspicious)
    gives: ``{"k", "flagged_in_top_k"}``, the second the number of them the count itself flags."""
    ranking = np.asarray(ranking, dtype=np.float64)
    if len(ranking) != len(estimate.flagged):
        raise ValueError(f"ranking has {len(ranking)} entries, the estimate {len(estimate.flagged)}")
    k = min(estimate.count, len(ranking))
    top = np.argsort(-np.nan_to_num(ranking, nan=-np.inf), kind="stable")[:k]
    return {"k": k, "flagged_in_top_k": int(estimate.flagged[top].sum())}


def standing(scores: pd.DataFrame, ranking: np.ndarray, train_accuracy: float | None,
             truth: np.ndarray | None = None) -> dict:
    """Where a run stands, for ``info`` and the Run page: the one count of wrong labels
    (:func:`noise_count` on the run's ``scores`` table), what it rests on and its ceiling (the samples whose
    suggestion outweighs their label: the count is a floor on real human noise with a well-fitting network,
    the ceiling close to the truth there and an overcount where the network is weak), the review budget it implies
    for ``ranking`` (``(N,)``, high = suspicious), the last epoch's training accuracy and whether it has
    memorised. With ``truth`` (``(N,)`` bool, known mislabeled samples), also how many truly mislabeled
    samples the top ``k`` holds."""
    estimate = noise_count(scores)
    budget = review_budget(estimate, ranking)
    # the count's own ceiling: every sample whose suggestion outweighs its label (measured: the truth lay
    # within 20% of [count, ceiling] on all eight cases of docs/bench/cleaning.md)
    out = {"estimated_count": estimate.count, "estimated_rate": estimate.rate, "basis": estimate.basis,
           "ceiling": int(estimate.flagged.sum()), **budget,
           "train_accuracy": train_accuracy,
           "memorised": train_accuracy is not None and memorised(train_accuracy, estimate.rate)}
    if truth is not None:
        truth = np.asarray(truth, dtype=bool)
        top = np.argsort(-np.nan_to_num(np.asarray(ranking, dtype=np.float64), nan=-np.inf), kind="stable")
        out["true_count"] = int(truth.sum())
        out["true_in_top_k"] = int(truth[top[: budget["k"]]].sum())
    return out
