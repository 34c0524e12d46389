"""What a completed run keeps beside its arrays, so that opening even a 1.28M-sample run reads small files:
its scores (``scores-<epochs>-<score set>.parquet``), every class's mean loss per epoch
(``class-loss-<epochs>.npy``) and, where it has ground truth, the evaluation of every score
(``evaluation-<epochs>-<score set>.json``). A run in progress computes them each time; a kept file is named
after the finished epochs, so a run trained further never reads what its shorter self kept, and the scores
after the version of the score table (:func:`csl_core.analysis.scores.score_set_version`), so a score added
to the table appears in runs finished before."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, InputError
from .errors import RunError
from .files import atomic_save_npy, atomic_write_bytes, atomic_write_json, open_checked, read_checked
from .layout import (
    EMBEDDINGS,
    KEPT_CLASS_LOSS,
    KEPT_CLASS_LOSS_FILE,
    KEPT_EVALUATION,
    KEPT_EVALUATION_FILE,
    KEPT_SCORES,
    KEPT_SCORES_FILE,
    PROBABILITIES,
    array_name,
    kept_name,
    max_bytes,
)
from .schema import not_losses

TRUTH_COLUMNS = ("is_mislabeled", "is_duplicate")


def _check_losses(rows, path: Path, chunk: int = 1 << 16) -> None:
    """Raise :class:`RunError` when the loss array holds an infinite or negative loss (NaN is a sample not
    seen that epoch): a crafted or damaged run, never ranked. One pass, a slice of rows at a time."""
    for start in range(0, len(rows), chunk):
        block = rows[start:start + chunk]
        bad = not_losses(block, unseen=True)
        if bad.any():
            sample, epoch = np.argwhere(bad)[0]
            raise RunError(f"{path / array_name('loss')} is damaged: sample {start + sample} has loss "
                           f"{float(block[sample, epoch])!r} in epoch {epoch + 1} (a loss is a finite number >= 0); "
                           "this run cannot be ranked")


def _checked(scores: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``scores``, unless a CSL is infinite or negative: a loss array holding such values (a crafted or
    damaged run: the tracker and ``import`` refuse them) is never ranked. NaN: a sample never seen."""
    csl = scores["csl"].to_numpy(np.float64)
    bad = not_losses(csl, unseen=True)   # NaN: a sample never seen
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise RunError(f"{path / array_name('loss')} is damaged: sample {first}'s CSL is {csl[first]!r} (its losses "
                       f"are not finite numbers >= 0; {int(bad.sum())} sample(s) so); this run cannot be ranked")
    return scores


def _finite(embeddings: np.ndarray | None, path: Path, chunk: int = 1 << 16) -> np.ndarray | None:
    """``embeddings`` unless one is not a finite number (a crafted or damaged file: one inf would be every
    sample's nearest neighbour and change the kNN scores), checked a slice of rows at a time."""
    for start in range(0, 0 if embeddings is None else len(embeddings), chunk):
        finite = np.isfinite(embeddings[start:start + chunk]).all(axis=1)
        if not finite.all():
            raise RunError(f"{path / EMBEDDINGS} is damaged: sample {start + int(np.flatnonzero(~finite)[0])}'s "
                           "embedding is not finite numbers; delete the file (the scores without it stay) or "
                           "write the run's embeddings again")
    return embeddings


def _fits(kept: pd.DataFrame, n: int, k: int) -> bool:
    """Whether kept scores are this run's: a row per sample, labels and suggestions class indices (else they
    are computed again: a crafted file never indexes the class names out of range)."""
    if len(kept) != n or not {"csl", "csl_rank", "label"} <= set(kept.columns):
        return False
    for column in ("label", "suggested_label"):
        if column in kept.columns:
            values = kept[column].to_numpy()
            if values.dtype.kind not in "iu" or (len(values) and (values.min() < 0 or values.max() >= k)):
                return False
    if "suggested_confidence" in kept.columns:
        confidence = kept["suggested_confidence"].to_numpy(np.float64)
        if not ((confidence >= 0) & (confidence <= 1) | np.isnan(confidence)).all():
            return False
    return True


class KeptResults:
    """The derived data of :class:`~csl_core.run.store.RunStore` and how a run is finished (a mixin: it uses
    the store's ``path``, ``meta``, ``samples``, ``classes``, ``probabilities``, ``row_reader``,
    ``update_meta`` and ``update_report``)."""

    def scores(self) -> pd.DataFrame:
        """Every score of every sample over the finished epochs, joined to the sample table.

        A completed run keeps them in ``scores-<epochs>-<score set>.parquet`` once computed, so that opening
        a large run again reads one file instead of scanning every per-epoch array.
        """
        from ..analysis.scores import compute_scores

        meta = self.meta
        finished = int(meta["finished_epochs"])
        if finished == 0:
            raise RunError(f"{self.path}: no finished epoch yet, so there are no scores")
        cache = self._kept_file(KEPT_SCORES, "parquet", scored=True)
        if meta.get("completed") and cache.is_file():
            try:
                with open_checked(cache, max_bytes(KEPT_SCORES_FILE, meta)) as f:
                    kept = pd.read_parquet(f)
                if _fits(kept, int(meta["num_samples"]), len(self.classes)):
                    return _checked(kept, self.path)
            except (OSError, ValueError, RunError):
                pass  # unreadable or not this run's: computed again below (and kept anew)
        arrays = {name: self.row_reader(name) for name in meta["fields"]}
        _check_losses(arrays["loss"], self.path)
        scores = _checked(compute_scores(arrays, samples=self.samples(), probabilities=self.probabilities(),
                                         embeddings=_finite(self.embeddings(), self.path)), self.path)
        if meta.get("completed"):
            self._keep(cache, lambda file: atomic_write_bytes(file, scores.to_parquet()))
        return scores

    def csl(self) -> np.ndarray:
        """Each sample's CSL: from the kept scores of a completed run, else summed from the loss array."""
        from ..analysis.scores import compute_scores

        cache = self._kept_file(KEPT_SCORES, "parquet", scored=True)
        if self.meta.get("completed") and cache.is_file():
            try:
                with open_checked(cache, max_bytes(KEPT_SCORES_FILE, self.meta)) as f:
                    csl = pd.read_parquet(f, columns=["csl"])["csl"].to_numpy()
                if len(csl) == self.num_samples:
                    return csl
            except (OSError, ValueError, RunError):
                pass
        return compute_scores({"loss": self.row_reader("loss")})["csl"].to_numpy()

    def class_mean_loss(self) -> np.ndarray:
        """Every class's mean loss per finished epoch, ``(classes, epochs)``: the class-average line of
        the trajectories plot. A completed run keeps it in ``class-loss-<epochs>.npy`` once computed,
        as it keeps its scores; otherwise one pass over the loss array, a slice of rows at a time."""
        from ..analysis.scores import class_averages

        meta = self.meta
        cache = self._kept_file(KEPT_CLASS_LOSS, "npy")
        if meta.get("completed") and cache.is_file():
            try:
                with open_checked(cache, max_bytes(KEPT_CLASS_LOSS_FILE, meta)) as f:
                    kept = np.load(f, allow_pickle=False)
                if kept.shape == (len(self.classes), int(meta["finished_epochs"])) and kept.dtype.kind == "f":
                    return kept
            except (OSError, ValueError, RunError):
                pass
        means = class_averages(self.row_reader("loss"), self.samples()["label"].to_numpy(np.int64),
                               len(self.classes))
        if meta.get("completed"):
            self._keep(cache, lambda file: atomic_save_npy(file, means))
        return means

    def finish(self, *, embeddings: np.ndarray | None = None, probabilities: np.ndarray | None = None,
               test_accuracy: float | None = None) -> None:
        """Complete the run: save the penultimate-layer ``embeddings`` ``(N, D)`` (near-duplicate search, the
        kNN score) and final ``probabilities`` ``(N, C)`` when given, record the test accuracy, mark the run
        complete at its finished epochs and keep what the dashboard reads. The one way a run is finished,
        by the trainer and by :class:`~csl_core.run.writer.RunWriter`."""
        n = self.num_samples
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2 or len(embeddings) != n:
                raise InputError(f"embeddings have shape {embeddings.shape}; expected ({n}, dimensions)")
            finite = np.isfinite(embeddings).all(axis=1)
            if not finite.all():   # one inf would be every sample's nearest neighbour
                raise DataError(f"embeddings of {int((~finite).sum())} sample(s) are not finite numbers (sample "
                                f"{int(np.flatnonzero(~finite)[0])} first); save the features of a training that "
                                "did not diverge, or leave the embeddings out")
        if probabilities is not None and np.shape(probabilities) != (n, len(self.classes)):
            raise InputError(f"probabilities have shape {np.shape(probabilities)}; expected ({n}, {len(self.classes)})")
        if self.finished_epochs == 0:
            raise RunError(f"{self.path}: no epoch was written, so the run cannot be complete")
        if embeddings is not None:
            atomic_save_npy(self.path / EMBEDDINGS, embeddings)
        if probabilities is not None:
            atomic_save_npy(self.path / PROBABILITIES, np.asarray(probabilities, dtype=np.float32))
        self.update_report(test_accuracy=test_accuracy)
        meta = self.meta
        self.update_meta(completed=True, epochs=meta["finished_epochs"])
        self.keep_derived()

    def keep_derived(self) -> None:
        """Compute and keep what the dashboard reads from a completed run: the scores, the class-average
        loss lines and, where the run has ground truth, the evaluation of every score. Called by the
        trainer after its last epoch, so that opening even a 1.28M-sample run reads small files only."""
        if not self.meta.get("completed"):
            raise RunError(f"{self.path}: the run is not complete; nothing is kept for a run in progress")
        scores = self.scores()
        self.class_mean_loss()
        for column in TRUTH_COLUMNS:
            if column in scores.columns and 0 < int(scores[column].astype(bool).sum()) < len(scores):
                self.evaluation(column, scores=scores)

    def evaluation(self, truth_column: str = "is_mislabeled", *, scores: pd.DataFrame | None = None) -> dict:
        """How well each score finds the samples flagged in ``truth_column`` of the sample table (injected
        noise or duplicates): :func:`csl_core.analysis.metrics.evaluate_scores`. A completed run keeps it in
        ``evaluation-<epochs>-<score set>.json``, one entry per truth column. ``scores`` (this run's :meth:`scores`)
        spares reading or computing them again when the caller holds them."""
        from ..analysis.metrics import evaluate_scores

        meta = self.meta
        cache = self._kept_file(KEPT_EVALUATION, "json", scored=True)
        kept: dict = {}
        if meta.get("completed") and cache.is_file():
            try:
                kept = json.loads(read_checked(cache, max_bytes(KEPT_EVALUATION_FILE, meta)))
            except (OSError, ValueError, RunError):
                kept = {}
            kept = kept if isinstance(kept, dict) else {}
            if isinstance(kept.get(truth_column), dict):
                return kept[truth_column]
        scores = self.scores() if scores is None else scores
        if truth_column not in scores.columns:
            raise RunError(f"{self.path}: this run has no ground truth '{truth_column}' (only runs with injected "
                           "noise or duplicates have one)")
        result = evaluate_scores(scores, scores[truth_column].to_numpy(bool))
        if meta.get("completed"):
            self._keep(cache, lambda file: atomic_write_json(file, {**kept, truth_column: result}))
        return result

    def _kept_file(self, kind: str, suffix: str, *, scored: bool = False) -> Path:
        """Where a completed run keeps derived data of ``kind``: named after the finished epochs, so that
        a run trained further never reads what its shorter self kept; what depends on the score table
        (``scored``) also after its version, so that a new score is computed for a finished run."""
        from ..analysis.scores import score_set_version

        version = score_set_version() if scored else None
        return self.path / kept_name(kind, self.meta["finished_epochs"], suffix, version)

    def _keep(self, file: Path, write) -> None:
        """Write a kept file with ``write(file)`` and delete what other epoch counts kept of its kind.
        A read-only run folder (or no parquet engine) keeps nothing: the data is computed each time, as it is
        for a store opened ``read_only`` (a run only viewed: viewing never writes)."""
        if getattr(self, "read_only", False):
            return
        try:
            write(file)
        except (OSError, ImportError, ValueError):
            return
        kind = re.match(r"(.+?)-\d{4,}", file.name).group(1)   # scores, class-loss, evaluation
        for old in self.path.glob(f"{kind}-[0-9]*{file.suffix}"):
            if old != file:
                old.unlink(missing_ok=True)
