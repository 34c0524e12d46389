"""Scores: pure functions of the per-epoch arrays. No files, threads or clocks in here.

Each array is ``(samples, epochs)``; memory-mapped arrays are read in row chunks, so a run of a
million samples is scored without loading it whole. Definitions follow the literature:

============================  ===================================================================
``csl``                       cumulative sample loss: the loss summed over epochs
``mean_loss``                 the loss averaged over the epochs in which the sample was seen
``final_loss``                the loss in the last epoch
``in_confidence``             1 - max softmax probability in the last epoch
``in_confidence_given``       1 - softmax probability of the given label in the last epoch
``learning_time``             first epoch from which the sample stays correct (never: #epochs)
``forgetting_events``         correct -> incorrect transitions between consecutive epochs
``aum``                       area under the margin: mean over epochs of (given logit - best other)
``datamaps_confidence``       mean probability of the given label over epochs
``datamaps_variability``      its standard deviation over epochs
``suggested_label``           the class with the highest mean probability over training
``suggested_confidence``      that mean probability
``knn_disagreement``          share of the k nearest neighbours (penultimate embeddings after
                              training, cosine) that carry another label
``fused``                     rank fusion: the mean of the normalised ranks of ``csl``, ``aum``
                              (low = suspicious) and ``knn_disagreement``
============================  ===================================================================
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK_ROWS = 65536

@dataclass(frozen=True)
class Score:
    """One per-sample score of a run: the column it lives in, how people call it, and its orientation.

    ``suspicious_when_high`` is True when a high value means "more likely mislabeled or memorised";
    :func:`suspicion` flips the others so that every score ranks the most suspicious sample first.
    ``benchmarked`` scores are compared in the benchmark (``mean_loss`` is left out there: it ranks
    exactly like ``csl``).
    """

    name: str
    label: str
    suspicious_when_high: bool = True
    benchmarked: bool = True


# The one table of scores: the CLI, every page and the benchmark read names, labels and orientation here.
SCORES: dict[str, Score] = {s.name: s for s in (
    Score("csl", "CSL (training pass)"),
    Score("eval_csl", "CSL (eval pass)"),
    Score("mean_loss", "mean loss", benchmarked=False),
    Score("final_loss", "final-epoch loss"),
    Score("in_confidence", "in-confidence (1 - max probability)"),
    Score("in_confidence_given", "1 - probability of the given label"),
    Score("learning_time", "learning time"),
    Score("forgetting_events", "forgetting events"),
    Score("aum", "area under the margin (low = suspicious)", suspicious_when_high=False),
    Score("datamaps_confidence", "Data Maps confidence (low = suspicious)", suspicious_when_high=False),
    Score("datamaps_variability", "Data Maps variability"),
    Score("knn_disagreement", "kNN label disagreement (neighbours with another label)"),
    Score("fused", "fused: CSL + AUM + kNN disagreement (rank average)"),
)}

# The ranking the review queue and `scores` start from: the first of these a run has.
DEFAULT_RANKING = ("fused", "csl")
# Neighbours of the kNN score, and the largest run it is computed for (an exact search is N^2 D).
KNN_NEIGHBOURS = 30
KNN_MAX_SAMPLES = 100_000
# Measured on CIFAR-10N and confusable Fashion-MNIST (docs/benchmarks.md, docs/bench/cifar10n.md): the three together
# rank as well as the best of them on every protocol, and better than CSL with kNN alone.
FUSED_COMPONENTS = ("csl", "aum", "knn_disagreement")


def suspicion(scores: pd.DataFrame, method: str = "csl") -> np.ndarray:
    """The score ``method`` of every sample, ``(N,)`` float64, oriented so that higher means more suspicious.

    ``scores`` is a run's scores table (:meth:`csl_core.run.store.RunStore.scores`). Raises ``ValueError``
    for an unknown name (listing the known ones) or a score this run does not have.
    """
    if method not in SCORES:
        raise ValueError(f"unknown score {method!r}; known scores: {', '.join(SCORES)}")
    if method not in scores.columns:
        raise ValueError(f"score {method!r} is not available for this run")
    values = scores[method].to_numpy(np.float64)
    return values if SCORES[method].suspicious_when_high else -values


def default_score(scores: pd.DataFrame) -> str:
    """The score to rank ``scores`` (a run's scores table) by when the person has not chosen one:
    the first of :data:`DEFAULT_RANKING` the run has."""
    return next((name for name in DEFAULT_RANKING if name in scores.columns), "csl")


def knn_disagreement(embeddings: np.ndarray, labels: np.ndarray, *, k: int = KNN_NEIGHBOURS) -> np.ndarray:
    """Each sample's share of its ``k`` nearest neighbours that carry another label, ``(N,)`` in [0, 1].

    ``embeddings`` is ``(N, D)`` (the run's penultimate features), compared by cosine similarity, a
    sample never its own neighbour; ``labels`` is ``(N,)``. High = suspicious: a label its look-alikes
    do not share. ``k`` is capped at ``N - 1``.
    """
    from .duplicates import nearest_neighbours

    labels = np.asarray(labels, dtype=np.int64)
    if np.ndim(embeddings) != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (samples, features) with one row per label ({len(labels)}), "
                         f"got shape {np.shape(embeddings)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(labels) < 2:
        return np.zeros(len(labels))
    neighbours, _ = nearest_neighbours(embeddings, k=k)
    return (labels[neighbours] != labels[:, None]).mean(axis=1)


def rank_fusion(*scores: np.ndarray) -> np.ndarray:
    """The mean over ``scores`` of each sample's normalised rank (ties share their mean rank), ``(N,)``
    in (0, 1]. Every input must be oriented high = suspicious; so is the result. NaN ranks lowest."""
    from scipy.stats import rankdata

    if not scores:
        raise ValueError("rank fusion needs at least one score")
    n = len(scores[0])
    total = np.zeros(n)
    for score in scores:
        if len(score) != n:
            raise ValueError(f"scores to fuse must have the same length, got {len(score)} and {n}")
        total += rankdata(np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)) / max(n, 1)
    return total / len(scores)


def available_scores(scores: pd.DataFrame) -> list[str]:
    """The names of the scores in :data:`SCORES` that ``scores`` (a run's scores table) holds, in table order."""
    return [name for name in SCORES if name in scores.columns]


def learning_time(correct: np.ndarray) -> np.ndarray:
    """First epoch from which every later epoch is correct; ``epochs`` if the last one is wrong."""
    correct = np.asarray(correct, dtype=bool)
    epochs = correct.shape[1]
    if epochs == 0:
        return np.zeros(len(correct), dtype=np.int64)
    wrong = ~correct
    any_wrong = wrong.any(axis=1)
    last_wrong = epochs - 1 - np.argmax(wrong[:, ::-1], axis=1)
    return np.where(any_wrong, last_wrong + 1, 0).astype(np.int64)


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Number of correct -> incorrect transitions between consecutive epochs."""
    correct = np.asarray(correct, dtype=bool)
    return (correct[:, :-1] & ~correct[:, 1:]).sum(axis=1).astype(np.int64)


def _last_seen(values: np.ndarray) -> np.ndarray:
    """The last non-NaN value of each row (NaN if the row has none)."""
    if values.shape[1] == 0:
        return np.full(len(values), np.nan)
    seen = ~np.isnan(values)
    has = seen.any(axis=1)
    last = values.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    out = values[np.arange(len(values)), last]
    return np.where(has, out, np.nan)


def _chunk_scores(chunk: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    loss = np.asarray(chunk["loss"], dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    # A sample never seen (a row of NaN) scores NaN; numpy would warn about each such row.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["csl"] = np.nansum(loss, axis=1)
        seen = (~np.isnan(loss)).sum(axis=1)
        out["mean_loss"] = np.where(seen > 0, out["csl"] / np.maximum(seen, 1), np.nan)
        out["final_loss"] = _last_seen(loss)
        if "p_max" in chunk:
            out["in_confidence"] = 1.0 - _last_seen(np.asarray(chunk["p_max"], dtype=np.float64))
        if "p_given" in chunk:
            p_given = np.asarray(chunk["p_given"], dtype=np.float64)
            out["in_confidence_given"] = 1.0 - _last_seen(p_given)
            out["datamaps_confidence"] = np.nanmean(p_given, axis=1) if p_given.shape[1] else np.nan
            out["datamaps_variability"] = np.nanstd(p_given, axis=1) if p_given.shape[1] else np.nan
        if "correct" in chunk:
            correct = np.asarray(chunk["correct"], dtype=bool)
            out["learning_time"] = learning_time(correct)
            out["forgetting_events"] = forgetting_events(correct)
        if "margin" in chunk:
            margin = np.asarray(chunk["margin"], dtype=np.float64)
            out["aum"] = np.nanmean(margin, axis=1) if margin.shape[1] else np.nan
        if "eval_loss" in chunk:
            out["eval_csl"] = np.nansum(np.asarray(chunk["eval_loss"], dtype=np.float64), axis=1)
    return out


def compute_scores(arrays: Mapping[str, np.ndarray], *, samples: pd.DataFrame | None = None,
                   probabilities: np.ndarray | None = None, embeddings: np.ndarray | None = None,
                   labels: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Every score for every sample, as a DataFrame indexed by sample.

    Parameters
    ----------
    arrays:
        ``{field: (samples, epochs)}``, at least ``loss``; also ``correct``, ``margin``, ``p_given``,
        ``p_max`` and ``eval_loss`` where available. Memory maps are read ``chunk_rows`` rows at a time.
    samples:
        The sample table; its columns are joined to the scores.
    probabilities:
        ``(samples, classes)`` mean softmax probabilities, for the suggested label.
    embeddings:
        ``(samples, features)`` penultimate-layer features after training, for ``knn_disagreement``
        and ``fused`` (with ``labels``, or the ``label`` column of ``samples``; left out above
        :data:`KNN_MAX_SAMPLES` samples, where an exact neighbour search costs too much).
    """
    if "loss" not in arrays:
        raise ValueError("compute_scores needs at least the 'loss' array")
    n = len(arrays["loss"])
    for name, arr in arrays.items():
        if len(arr) != n:
            raise ValueError(f"array '{name}' has {len(arr)} rows, 'loss' has {n}")
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, chunk_rows):
        chunk = {name: arr[start: start + chunk_rows] for name, arr in arrays.items()}
        for name, values in _chunk_scores(chunk).items():
            parts.setdefault(name, []).append(np.broadcast_to(values, (len(chunk["loss"]),)))
    columns = {name: np.concatenate(vals) if vals else np.empty(0) for name, vals in parts.items()}
    if probabilities is not None:
        if len(probabilities) != n:
            raise ValueError(f"probabilities have {len(probabilities)} rows, 'loss' has {n}")
        suggested = np.empty(n, dtype=np.int64)
        confidence = np.empty(n, dtype=np.float64)
        for start in range(0, n, chunk_rows):
            p = np.asarray(probabilities[start: start + chunk_rows])
            suggested[start: start + len(p)] = p.argmax(axis=1)
            confidence[start: start + len(p)] = p.max(axis=1)
        columns["suggested_label"] = suggested
        columns["suggested_confidence"] = confidence
    if labels is None and samples is not None and "label" in samples.columns:
        labels = samples["label"].to_numpy(np.int64)
    if embeddings is not None and labels is not None and 1 < n <= KNN_MAX_SAMPLES:
        if len(embeddings) != n or len(labels) != n:
            raise ValueError(f"embeddings have {len(embeddings)} rows and labels {len(labels)}, 'loss' has {n}")
        columns["knn_disagreement"] = knn_disagreement(np.asarray(embeddings), labels)
        components = [columns[name] if SCORES[name].suspicious_when_high else -columns[name]
                      for name in FUSED_COMPONENTS if name in columns]
        columns["fused"] = rank_fusion(*components)
    scores = pd.DataFrame(columns, index=pd.RangeIndex(n, name="index"))
    scores["csl_rank"] = rank_descending(scores["csl"].to_numpy())
    if samples is not None:
        if len(samples) != n:
            raise ValueError(f"the sample table has {len(samples)} rows, the arrays {n}")
        table = samples.drop(columns=["index"], errors="ignore").reset_index(drop=True)
        table.index.name = "index"
        scores = table.join(scores)
    return scores


def rank_descending(values: np.ndarray) -> np.ndarray:
    """1 for the highest value; ties broken by sample index, NaN ranked last."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)
    order = np.lexsort((np.arange(len(values)), -values))
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def class_averages(values: np.ndarray, labels: np.ndarray, num_classes: int, *,
                   chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Every class's mean row of ``values``, ``(num_classes, epochs)``, NaN ignored (a class with no
    finite value in an epoch is NaN there). Reads ``values`` ``chunk_rows`` rows at a time, so one pass
    over a memory-mapped array gives the dashed line of every class's peacock plot."""
    labels = np.asarray(labels, dtype=np.int64)
    n, epochs = values.shape
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} rows")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    cells = num_classes * epochs
    sums, counts = np.zeros(cells), np.zeros(cells)
    for start in range(0, n, chunk_rows):
        chunk = np.asarray(values[start: start + chunk_rows], dtype=np.float64)
        # cell (class, epoch) of every value, flattened: one bincount per chunk
        cell = (labels[start: start + len(chunk), None] * epochs + np.arange(epochs)).ravel()
        finite = ~np.isnan(chunk.ravel())
        sums += np.bincount(cell[finite], weights=chunk.ravel()[finite], minlength=cells)
        counts += np.bincount(cell[finite], minlength=cells)
    means = np.full(cells, np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means.reshape(num_classes, epochs)


def class_average(values: np.ndarray, labels: np.ndarray, label: int) -> np.ndarray:
    """The mean row of ``values`` over samples labelled ``label`` (the dashed line of the peacock plot)."""
    rows = np.flatnonzero(np.asarray(labels) == label)
    if len(rows) == 0:
        return np.full(values.shape[1], np.nan)
    return np.nanmean(np.asarray(values[rows], dtype=np.float64), axis=0)
