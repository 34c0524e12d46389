"""Scores: pure functions of the per-epoch arrays. No files, threads or clocks in here.

Each array is ``(samples, epochs)``; memory-mapped arrays are read in row chunks, so a run of a
million samples is scored without loading it whole. :data:`SCORES` and :data:`COLUMNS` are the one table
of scores (each with its parameters, short name and description); docs/api.md says what each means and is
tested against them.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas loads where a table is made, not at import: `csl-clean --help` stays fast
    import pandas as pd

from ..errors import InputError
from .suggest import VOTE_WEIGHT, class_evidence, suggest
from .trust import LIKELIHOOD, p_wrong

CHUNK_ROWS = 65536
# Neighbours of the kNN score; the search is exact up to 20k samples on a CPU and faiss above
# (analysis/neighbours.py), so every run, 1,000 samples or 1.28M, gets the same default ranking.
KNN_NEIGHBOURS = 30
# Measured on CIFAR-10N and confusable Fashion-MNIST (docs/benchmarks.md, docs/bench/cifar10n.md): the three together
# rank as well as the best of them on every protocol, and better than CSL with kNN alone.
FUSED_COMPONENTS = ("csl", "aum", "knn_disagreement")
# The ranking the review queue and `scores` start from: the first of these a run has.
DEFAULT_RANKING = ("fused", "csl")

Inputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Score:
    """One per-sample score of a run: its column, how people call it, its orientation, what it needs and how
    it is computed.

    ``compute(inputs)`` returns the ``(samples,)`` values (or a scalar for all, or None where it does not
    apply). ``needs`` names the inputs it reads: per-epoch arrays (``loss``, ``correct``, ``margin``,
    ``p_given``, ``p_max``, ``eval_loss``, ``(samples, epochs)`` float64, ``correct`` bool),
    ``probabilities`` (``(samples, classes)``), ``labels`` (``(samples,)``), and, for a score computed over
    the whole run (``rowwise=False``), ``embeddings`` (``(samples, features)``) and the columns of the
    scores computed before it in the table. A score is computed where the run has everything it needs.
    ``rowwise`` scores see a slice of rows at a time, so a million-sample run is never loaded whole.

    ``suspicious_when_high`` is True when a high value means "more likely mislabeled or memorised";
    :func:`suspicion` flips the others so that every score ranks the most suspicious sample first.
    ``benchmarked`` scores are compared in the benchmark (``mean_loss`` is left out there: it ranks
    exactly like ``csl``); ``headline`` scores are the few shown where not every one fits (``info``'s
    AUROCs, the Evaluate page's first curves). Raise ``version`` when a computation changes: a completed
    run's kept scores are named after the table's version (:func:`score_set_version`), so it recomputes.

    ``short`` is how a person calls it where space is short ("kNN label disagreement"), ``description`` what
    it means in a few words; ``label`` is both. ``params`` are the settings it is computed with (the number
    of neighbours, the fused components, the vote weight): ``compute`` receives them as keyword arguments
    and reads no other, and they are part of :func:`score_set_version`, so a changed or added setting never
    serves scores computed with the old one.
    """

    name: str
    short: str
    compute: Callable[..., np.ndarray | float | None]
    needs: tuple[str, ...] = ("loss",)
    suspicious_when_high: bool = True
    benchmarked: bool = True
    headline: bool = False
    rowwise: bool = True
    version: int = 1
    description: str = ""
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The short name with its description: "kNN label disagreement (neighbours with another label)"."""
        return f"{self.short} ({self.description})" if self.description else self.short

    def __call__(self, inputs: Inputs) -> np.ndarray | float | None:
        """The score of ``inputs``, computed with its ``params``."""
        return self.compute(inputs, **self.params)


def _last_seen(values: np.ndarray) -> np.ndarray:
    """The last non-NaN value of each row (NaN if the row has none)."""
    if values.shape[1] == 0:
        return np.full(len(values), np.nan)
    seen = ~np.isnan(values)
    has = seen.any(axis=1)
    last = values.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    out = values[np.arange(len(values)), last]
    return np.where(has, out, np.nan)


def _sum_seen(values: np.ndarray) -> np.ndarray:
    """Each row's sum over the epochs it was seen; NaN for a sample never seen (a ``drop_last`` loader): its
    CSL is unknown, ranked after every sample seen, never 0 (the cleanest)."""
    return np.where((~np.isnan(values)).any(axis=1), np.nansum(values, axis=1), np.nan)


def _mean_loss(x: Inputs) -> np.ndarray:
    seen = (~np.isnan(x["loss"])).sum(axis=1)
    return np.where(seen > 0, np.nansum(x["loss"], axis=1) / np.maximum(seen, 1), np.nan)


def _row_stat(stat, field: str):
    """``stat`` (nanmean, nanstd) of each row of ``field``; NaN for a run without an epoch of it."""
    return lambda x: stat(x[field], axis=1) if x[field].shape[1] else np.nan


def _knn(x: Inputs, *, neighbours: int) -> np.ndarray:
    """The share of the ``neighbours`` nearest (``neighbour_labels``, given labels) with another label."""
    return (x["neighbour_labels"][:, :neighbours] != x["labels"][:, None]).mean(axis=1)


def _evidence(x: Inputs, *, neighbours: int, vote_weight: float) -> np.ndarray:
    """A slice's class evidence: mean softmax, mixed with the ``neighbours``' vote at ``vote_weight``."""
    near = x.get("neighbour_labels")
    return class_evidence(x["probabilities"], None if near is None else near[:, :neighbours], vote_weight=vote_weight)


def _suggested(x: Inputs, **params) -> np.ndarray:
    return suggest(_evidence(x, **params), x["labels"])[0]


def _suggested_confidence(x: Inputs, **params) -> np.ndarray:
    return suggest(_evidence(x, **params), x["labels"])[1]


def _label_evidence(x: Inputs, **params) -> np.ndarray:
    return _evidence(x, **params)[np.arange(len(x["labels"])), x["labels"]]


def _p_wrong(x: Inputs, **likelihood) -> np.ndarray:
    return p_wrong(x["label_evidence"], x["labels"], likelihood=likelihood)


def _fused(x: Inputs, *, components: tuple[str, ...]) -> np.ndarray:
    return rank_fusion(*[x[name] if SCORES[name].suspicious_when_high else -x[name]
                         for name in components if name in x])


# The settings of the class evidence: the neighbours' vote mixed into the mean softmax.
_EVIDENCE = {"neighbours": KNN_NEIGHBOURS, "vote_weight": VOTE_WEIGHT}

# The one table of scores: the CLI, every page, the bench, interop and the memorisation comparison read it.
SCORES: dict[str, Score] = {s.name: s for s in (
    Score("csl", "CSL (training pass)", lambda x: _sum_seen(x["loss"]), headline=True, version=2),
    Score("eval_csl", "CSL (eval pass)", lambda x: _sum_seen(x["eval_loss"]), ("eval_loss",), version=2),
    Score("mean_loss", "mean loss", _mean_loss, benchmarked=False),
    Score("final_loss", "final-epoch loss", lambda x: _last_seen(x["loss"]), headline=True),
    Score("in_confidence", "in-confidence", lambda x: 1.0 - _last_seen(x["p_max"]), ("p_max",),
          description="1 - max probability"),
    Score("in_confidence_given", "1 - probability of the given label", lambda x: 1.0 - _last_seen(x["p_given"]),
          ("p_given",)),
    Score("learning_time", "learning time", lambda x: learning_time(x["correct"]), ("correct",)),
    Score("forgetting_events", "forgetting events", lambda x: forgetting_events(x["correct"]), ("correct",)),
    Score("aum", "area under the margin", _row_stat(np.nanmean, "margin"), ("margin",),
          suspicious_when_high=False, headline=True, description="low = suspicious"),
    Score("datamaps_confidence", "Data Maps confidence", _row_stat(np.nanmean, "p_given"),
          ("p_given",), suspicious_when_high=False, description="low = suspicious"),
    Score("datamaps_variability", "Data Maps variability", _row_stat(np.nanstd, "p_given"), ("p_given",)),
    Score("knn_disagreement", "kNN label disagreement", _knn, ("neighbour_labels", "labels"), headline=True,
          description="neighbours with another label", params={"neighbours": KNN_NEIGHBOURS}),
    Score("fused", "fused: CSL + AUM + kNN disagreement", _fused, ("csl", "knn_disagreement"),
          headline=True, rowwise=False, description="rank average", params={"components": FUSED_COMPONENTS}),
)}

# Per-sample columns beside the scores, computed the same way; they rank nothing.
COLUMNS: dict[str, Score] = {s.name: s for s in (
    Score("suggested_label", "suggested label", _suggested, ("probabilities", "labels"), version=2,
          description="the likeliest class other than the given one", params=_EVIDENCE),
    Score("suggested_confidence", "confidence of the suggestion", _suggested_confidence, ("probabilities", "labels"),
          version=2, description="its share of the class evidence", params=_EVIDENCE),
    Score("label_evidence", "the given label's share of the class evidence", _label_evidence,
          ("probabilities", "labels"), params=_EVIDENCE),
    Score("csl_rank", "CSL rank", lambda x: rank_descending(x["csl"]), ("csl",), rowwise=False,
          description="1 = highest"),
    Score("p_wrong", "probability that the label is wrong", _p_wrong,
          ("label_evidence", "labels"), rowwise=False,
          description="calibrated; summed over the run: the count of wrong labels", params=LIKELIHOOD),
)}


def score_set_version() -> str:
    """A short fingerprint of :data:`SCORES` and :data:`COLUMNS` (names, versions, needs, parameters): a
    completed run keeps its scores under it, so a score added or changed, or a parameter added or changed,
    is computed again for runs finished before."""
    entries = [(s.name, s.version, s.needs, s.rowwise, sorted(s.params.items()))
               for s in (*SCORES.values(), *COLUMNS.values())]
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:8]


def suspicion(scores: pd.DataFrame, method: str = "csl") -> np.ndarray:
    """The score ``method`` of every sample, ``(N,)`` float64, oriented so that higher means more suspicious.

    ``scores`` is a run's scores table (:meth:`csl_core.run.store.RunStore.scores`). Raises ``ValueError``
    for an unknown name (listing the known ones) or a score this run does not have.
    """
    if method not in SCORES:
        raise InputError(f"unknown score {method!r}; known scores: {', '.join(SCORES)}")
    if method not in scores.columns:
        raise InputError(f"score {method!r} is not available for this run")
    values = scores[method].to_numpy(np.float64)
    return values if SCORES[method].suspicious_when_high else -values


def default_score(scores: pd.DataFrame) -> str:
    """The score to rank ``scores`` (a run's scores table) by when the person has not chosen one:
    the first of :data:`DEFAULT_RANKING` the run has."""
    return next((name for name in DEFAULT_RANKING if name in scores.columns), "csl")


def nearest_neighbour_indices(embeddings: np.ndarray, *, k: int = KNN_NEIGHBOURS) -> np.ndarray:
    """Each sample's ``k`` nearest neighbours by cosine similarity, ``(N, k)`` indices, itself excluded."""
    from .neighbours import nearest_neighbours

    if np.ndim(embeddings) != 2:
        raise ValueError(f"embeddings must be (samples, features), got shape {np.shape(embeddings)}")
    return nearest_neighbours(np.asarray(embeddings), k=k)[0]


def knn_disagreement(embeddings: np.ndarray, labels: np.ndarray, *, k: int = KNN_NEIGHBOURS) -> np.ndarray:
    """Each sample's share of its ``k`` nearest neighbours that carry another label, ``(N,)`` in [0, 1].

    ``embeddings`` is ``(N, D)`` (the run's penultimate features), compared by cosine similarity, a
    sample never its own neighbour; ``labels`` is ``(N,)``. High = suspicious: a label its look-alikes
    do not share. ``k`` is capped at ``N - 1``.
    """
    from .neighbours import nearest_neighbours

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


def compute_scores(arrays: Mapping[str, np.ndarray], *, samples: pd.DataFrame | None = None,
                   probabilities: np.ndarray | None = None, embeddings: np.ndarray | None = None,
                   labels: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Every score of :data:`SCORES` and column of :data:`COLUMNS` the inputs allow, for every sample, as a
    DataFrame indexed by sample.

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
        and ``fused`` (with ``labels``, or the ``label`` column of ``samples``), at any size: the
        neighbour search switches to faiss above 20k samples on a CPU.
    """
    if "loss" not in arrays:
        raise ValueError("compute_scores needs at least the 'loss' array")
    n = len(arrays["loss"])
    for name, arr in arrays.items():
        if len(arr) != n:
            raise ValueError(f"array '{name}' has {len(arr)} rows, 'loss' has {n}")
    if probabilities is not None and len(probabilities) != n:
        raise ValueError(f"probabilities have {len(probabilities)} rows, 'loss' has {n}")
    if labels is None and samples is not None and "label" in samples.columns:
        labels = samples["label"].to_numpy(np.int64)
    if embeddings is not None and labels is not None and n > 1 and (
            len(embeddings) != n or len(labels) != n):
        raise ValueError(f"embeddings have {len(embeddings)} rows and labels {len(labels)}, 'loss' has {n}")
    entries = [*SCORES.values(), *COLUMNS.values()]
    rows = dict(arrays)
    if probabilities is not None:
        rows["probabilities"] = probabilities
    if labels is not None:
        rows["labels"] = np.asarray(labels, dtype=np.int64)
        if embeddings is not None and n > 1:
            # one neighbour search for the kNN score and the suggestion's vote; sliced with the rows
            k = max(s.params.get("neighbours", 0) for s in entries)   # each score reads its first ones
            rows["neighbour_labels"] = rows["labels"][nearest_neighbour_indices(embeddings, k=k)]
    parts: dict[str, list[np.ndarray]] = {}
    # A sample never seen (a row of NaN) scores NaN; numpy would warn about each such row.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in range(0, n, chunk_rows):
            chunk = {name: np.asarray(arr[start: start + chunk_rows],
                                      dtype=bool if name == "correct" else np.float64 if name in arrays else None)
                     for name, arr in rows.items()}
            for score in entries:
                if score.rowwise and all(need in chunk for need in score.needs):
                    values = score(chunk)
                    if values is not None:
                        parts.setdefault(score.name, []).append(np.broadcast_to(values, (len(chunk["loss"]),)))
        columns = {name: np.concatenate(vals) if vals else np.empty(0) for name, vals in parts.items()}
        whole = {**rows, **({"embeddings": embeddings} if embeddings is not None else {})}
        for score in entries:
            if not score.rowwise and all(need in whole or need in columns for need in score.needs):
                values = score({**whole, **columns})
                if values is not None:
                    columns[score.name] = np.array(np.broadcast_to(values, (n,)))
    import pandas as pd

    scores = pd.DataFrame(columns, index=pd.RangeIndex(n, name="index"))
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
