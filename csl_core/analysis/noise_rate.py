"""Where a person stands: how many labels are likely wrong, and whether the run has memorised them.

Pure functions of a run's arrays (no files). :func:`noise_count` is the one count every page and command shows:
the sum of ``p_wrong`` (:mod:`csl_core.analysis.trust`) with its interval, re-estimated from the person's answers
(:mod:`csl_core.analysis.audit`). The confident joint of confident learning (Northcutt et al., 2021),
:func:`estimate_label_noise`, stays as a benchmark baseline: on the run's own mean softmax it counted 2.4x the
truth on a 1,210-image folder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .suggest import per_class_rows
from .trust import WrongCount, wrong_count

# The decision log's source of an accepted suggested cleaning (:mod:`csl_core.analysis.cleaning`): the tool's own
# plan, so never a person's answer about the labels (:func:`answers_from_actions`).
CLEANING_SOURCE = "suggested-cleaning"


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


def wrong_label_weights(suggested_confidence: np.ndarray, label_evidence: np.ndarray) -> np.ndarray:
    """The former count's weights (a benchmark baseline now): ``(s - g) / (s + g)`` where the suggestion's share
    of the evidence ``s`` outweighs the given label's ``g``, else 0. Summed, it counted 0.55-1.9x the truth
    (docs/bench/trust.md)."""
    s = np.nan_to_num(np.asarray(suggested_confidence, dtype=np.float64))
    g = np.nan_to_num(np.asarray(label_evidence, dtype=np.float64))
    return np.divide(s - g, s + g, out=np.zeros_like(s), where=(s > g) & (s + g > 0))


def answers_from_actions(actions: np.ndarray | None, sources: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A person's decisions as answers about the labels: ``(answered, wrong)``, the decided samples and whether
    the person judged the label wrong (relabelled or dropped: wrong; kept: right). ``actions`` ``(N,)``: keep /
    relabel / drop / undecided (the decision log's effective actions); ``sources`` ``(N,)``, the log's source of
    each: an accepted suggested cleaning (:data:`CLEANING_SOURCE`) is the tool's own
    plan, not an answer, and is left out."""
    if actions is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    actions = np.asarray(actions, dtype=object)
    decided = np.isin(actions, ["keep", "relabel", "drop"])
    if sources is not None:
        decided &= np.asarray(sources, dtype=object) != CLEANING_SOURCE
    answered = np.flatnonzero(decided)
    return answered, np.isin(actions[answered], ["relabel", "drop"])


def run_p_wrong(scores: pd.DataFrame) -> np.ndarray:
    """The model's ``p_wrong`` of every sample of a scores table (its column; computed here for a table kept
    before the column existed); NaN-free, 0 where the run has no class evidence."""
    from .trust import p_wrong

    n = len(scores)
    if "p_wrong" in scores.columns:
        return np.nan_to_num(scores["p_wrong"].to_numpy(np.float64))
    if n == 0 or "label_evidence" not in scores.columns:
        return np.zeros(n)
    return p_wrong(scores["label_evidence"], scores["label"])


def noise_count(scores: pd.DataFrame, actions: np.ndarray | None = None, sources: np.ndarray | None = None
                ) -> WrongCount:
    """The one count of wrong labels of a run (:func:`csl_core.analysis.trust.wrong_count`): the sum of the
    scores table's ``p_wrong`` with its interval, re-estimated from the person's answers where the decision
    log holds enough (``actions`` and ``sources`` ``(N,)``, see :func:`answers_from_actions`). ``info``, the
    Run page, Focused review, Export, the review budget and the suggested cleaning all show this number."""
    answered, wrong = answers_from_actions(actions, sources)
    return wrong_count(run_p_wrong(scores), answered, wrong)


def review_budget(estimate: WrongCount, ranking: np.ndarray) -> dict:
    """What reviewing the top ``estimate.count`` samples of ``ranking`` (``(N,)``, high = suspicious) gives:
    ``{"k", "expected_wrong_in_top_k"}``, the second the sum of ``p_wrong`` over them."""
    ranking = np.asarray(ranking, dtype=np.float64)
    if len(ranking) != len(estimate.p_wrong):
        raise ValueError(f"ranking has {len(ranking)} entries, the estimate {len(estimate.p_wrong)}")
    k = min(estimate.count, len(ranking))
    top = np.argsort(-np.nan_to_num(ranking, nan=-np.inf), kind="stable")[:k]
    return {"k": k, "expected_wrong_in_top_k": float(estimate.p_wrong[top].sum())}


def standing(scores: pd.DataFrame, ranking: np.ndarray, train_accuracy: float | None,
             truth: np.ndarray | None = None, actions: np.ndarray | None = None,
             sources: np.ndarray | None = None) -> dict:
    """Where a run stands, for ``info`` and the Run page: the one count of wrong labels (:func:`noise_count`,
    with the person's decisions ``actions`` as answers) and its line of text, the review budget it implies for
    ``ranking`` (``(N,)``, high = suspicious), the last epoch's training accuracy and whether it has memorised.
    With ``truth`` (``(N,)`` bool, known mislabeled samples), also the true count and how many of them the top
    ``k`` holds."""
    estimate = noise_count(scores, actions, sources)
    budget = review_budget(estimate, ranking)
    out = {"estimated_count": estimate.count, "low": estimate.low, "high": estimate.high,
           "estimated_rate": estimate.count / max(len(scores), 1), "answers": estimate.answers,
           "text": estimate.text(), **budget, "train_accuracy": train_accuracy,
           "memorised": train_accuracy is not None and memorised(train_accuracy, estimate.count / max(len(scores), 1))}
    if truth is not None:
        truth = np.asarray(truth, dtype=bool)
        top = np.argsort(-np.nan_to_num(np.asarray(ranking, dtype=np.float64), nan=-np.inf), kind="stable")
        out["true_count"] = int(truth.sum())
        out["true_in_top_k"] = int(truth[top[: budget["k"]]].sum())
    return out
