"""Stability-based memorisation (Feldman & Zhang) and how well one run's scores track it. Pure: no files.

Feldman's memorisation of a training sample ``i`` is how much its own presence in the training set
raises the model's accuracy on it::

    mem(i) = P[model correct on i | i in the training set] - P[model correct on i | i held out]

The subsampling estimator trains ``K`` models, each on a random ``fraction`` of the training set, and
averages each sample's correctness (or its softmax probability of the given label) over the models
that saw it and over those that did not. ``K`` models cost ``K * fraction`` ordinary trainings.

Every array here is ``(models, samples)`` for per-model results and ``(samples,)`` for scores.
Higher memorisation = the sample is learned only when it is itself in the training set (an atypical
image, a mislabeled one); near 0 = learned from the other samples (typical images, duplicates).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError

TOP_FRACTIONS = (0.01, 0.10)
ACCURACY_MEASURES = ("correct", "p_given")


def subset_mask(num_samples: int, fraction: float, seed: int, model: int) -> np.ndarray:
    """Which samples model ``model`` trains on: ``round(fraction * num_samples)`` of them, drawn without
    replacement from a generator seeded by ``(seed, model)``, so that any model's subset can be redrawn
    alone (a resumed estimate checks the subsets it finds against these). Bool ``(num_samples,)``."""
    if not 0 < fraction < 1:
        raise InputError(f"the training fraction must lie strictly between 0 and 1, got {fraction}")
    size = int(round(fraction * num_samples))
    if not 0 < size < num_samples:
        raise InputError(f"a fraction of {fraction} of {num_samples} samples leaves no sample in or none out")
    chosen = np.random.default_rng([int(seed), int(model)]).choice(num_samples, size=size, replace=False)
    mask = np.zeros(num_samples, dtype=bool)
    mask[chosen] = True
    return mask


def stability_memorization(in_training: np.ndarray, accuracy: np.ndarray) -> pd.DataFrame:
    """The subsampling estimate of every sample's memorisation.

    Parameters
    ----------
    in_training:
        Bool ``(models, samples)``: whether model ``k`` trained on sample ``i``.
    accuracy:
        ``(models, samples)`` in [0, 1]: model ``k``'s correctness on sample ``i`` (Feldman & Zhang's
        definition) or its softmax probability of the given label (a smoother variant).

    Returns
    -------
    One row per sample: ``memorization`` (in-training mean minus held-out mean, in [-1, 1]; NaN where a
    sample was never in, or never out of, a training subset), ``in_accuracy``, ``out_accuracy``,
    ``models_in``, ``models_out``.
    """
    in_training = np.asarray(in_training, dtype=bool)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if in_training.ndim != 2 or in_training.shape != accuracy.shape:
        raise InputError(f"membership {in_training.shape} and accuracy {accuracy.shape} must both be "
                         "(models, samples)")
    if not np.all(np.isfinite(accuracy)) or accuracy.min(initial=0) < 0 or accuracy.max(initial=0) > 1:
        raise InputError("accuracy must be finite and lie in [0, 1] (correctness or a probability)")
    models_in = in_training.sum(axis=0)
    models_out = len(in_training) - models_in
    with np.errstate(invalid="ignore", divide="ignore"):
        in_accuracy = np.where(models_in > 0, (accuracy * in_training).sum(axis=0) / models_in, np.nan)
        out_accuracy = np.where(models_out > 0, (accuracy * ~in_training).sum(axis=0) / models_out, np.nan)
    return pd.DataFrame({"memorization": in_accuracy - out_accuracy, "in_accuracy": in_accuracy,
                         "out_accuracy": out_accuracy, "models_in": models_in, "models_out": models_out},
                        index=pd.RangeIndex(in_training.shape[1], name="index"))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b / (|a| |b|)``; NaN when either vector is all zeros."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float("nan")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either vector is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return cosine_similarity(a - a.mean(), b - b.mean()) if len(a) else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their average rank); NaN when either vector is constant."""
    from scipy.stats import rankdata

    return pearson(rankdata(a), rankdata(b)) if len(a) else float("nan")


def nonnegative(score: np.ndarray) -> np.ndarray:
    """``score`` shifted to start at 0 if it has negative values, else unchanged.

    Cosine similarity compares directions from the origin: losses, CSL, learning time and forgetting
    counts are >= 0 and are compared as they are (as in the paper), while scores of arbitrary sign
    (minus AUM, minus Data Maps confidence) are shifted so that their least suspicious sample sits at 0.
    """
    score = np.asarray(score, dtype=np.float64)
    low = np.min(score) if len(score) else 0.0
    return score - low if low < 0 else score


def compare_scores(scores: Mapping[str, np.ndarray], memorization: np.ndarray, *,
                   top_fractions: Sequence[float] = TOP_FRACTIONS) -> pd.DataFrame:
    """How closely each score tracks the memorisation estimate: the paper's Table 1, and Spearman.

    ``scores`` maps a name to ``(samples,)`` values oriented so that higher = more memorised (see
    :data:`csl_core.analysis.scores.SCORES`). Samples where the estimate or the score is NaN are
    left out. ``top_fractions``: the same over the samples with the highest memorisation estimate only
    (the top 1% and 10% by default). One row per score and subset: ``score``, ``samples`` ("all" or
    "top 1%"...), ``n``, ``cosine`` (see :func:`nonnegative`), ``pearson``, ``spearman``.
    """
    memorization = np.asarray(memorization, dtype=np.float64)
    subsets = _top_subsets(memorization, top_fractions)
    rows = []
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != memorization.shape:
            raise InputError(f"score {name!r} has shape {values.shape}, the estimate {memorization.shape}")
        for label, rows_in in subsets:
            keep = rows_in[np.isfinite(values[rows_in])]
            score, mem = nonnegative(values[keep]), memorization[keep]
            rows.append({"score": name, "samples": label, "n": len(keep), "cosine": cosine_similarity(score, mem),
                         "pearson": pearson(score, mem), "spearman": spearman(score, mem)})
    return pd.DataFrame(rows, columns=["score", "samples", "n", "cosine", "pearson", "spearman"])


def _top_subsets(memorization: np.ndarray, top_fractions: Sequence[float]) -> list[tuple[str, np.ndarray]]:
    known = np.flatnonzero(np.isfinite(memorization))
    order = known[np.argsort(-memorization[known], kind="stable")]
    subsets = [("all", known)]
    for fraction in top_fractions:
        if not 0 < fraction < 1:
            raise InputError(f"top fractions must lie strictly between 0 and 1, got {fraction}")
        count = max(2, int(round(fraction * len(order))))
        subsets.append((f"top {fraction:.0%}", np.sort(order[:count])))
    return subsets


def agreement_by_models(in_training: np.ndarray, accuracy: np.ndarray, score: np.ndarray,
                        model_counts: Sequence[int]) -> pd.DataFrame:
    """The estimator's own noise: how the estimate from the first ``k`` models agrees with ``score`` and
    with the estimate from the other models, for each ``k`` in ``model_counts``.

    One row per ``k``: ``models``, ``cosine`` and ``spearman`` of ``score`` (higher = more memorised)
    against the estimate from the first ``k`` models, and ``split_half_spearman``: the Spearman
    correlation between the estimates from models ``[0, k/2)`` and ``[k/2, k)`` (two independent
    estimates; 1 would mean no estimator noise at all).
    """
    in_training = np.asarray(in_training, dtype=bool)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    score = nonnegative(np.asarray(score, dtype=np.float64))
    rows = []
    for k in model_counts:
        if not 2 <= k <= len(in_training):
            raise InputError(f"model count {k} outside 2..{len(in_training)}")
        mem = stability_memorization(in_training[:k], accuracy[:k])["memorization"].to_numpy()
        first = stability_memorization(in_training[: k // 2], accuracy[: k // 2])["memorization"].to_numpy()
        second = stability_memorization(in_training[k // 2: k], accuracy[k // 2: k])["memorization"].to_numpy()
        known = np.isfinite(mem) & np.isfinite(score)
        halves = np.isfinite(first) & np.isfinite(second)
        rows.append({"models": int(k), "cosine": cosine_similarity(score[known], mem[known]),
                     "spearman": spearman(score[known], mem[known]),
                     "split_half_spearman": spearman(first[halves], second[halves]) if halves.sum() > 1
                     else float("nan")})
    return pd.DataFrame(rows, columns=["models", "cosine", "spearman", "split_half_spearman"])


def default_model_counts(models: int) -> list[int]:
    """``models`` and the halvings of it down to about 10 (e.g. 200 -> [12, 25, 50, 100, 200])."""
    counts = [int(models)]
    while counts[-1] // 2 >= 10:
        counts.append(counts[-1] // 2)
    return sorted(c for c in counts if c >= 2)
