"""A run folder from anyone's training: a foreign loop (Lightning, Hugging Face, a notebook) feeds a
:class:`~csl_core.engine.tracker.CSLTracker`, and :class:`RunWriter` writes what it recorded, epoch by
epoch, into the same run folder our own trainer writes. The dashboard cannot tell who trained.

::

    writer = RunWriter("runs/mine", labels=labels, classes=classes, paths=paths)   # or images=(N, H, W[, C])
    for epoch in range(epochs):
        ...                                          # training that calls tracker.update(...)
        writer.end_epoch(tracker)                    # tracker.end_epoch() + one epoch column on disk
    writer.finish(embeddings=features)               # marks the run complete; scores are kept

While the writer is open it holds the run's lock, so the dashboard's *Run* page follows the epochs as
they are written. Images are either files (their paths go into the sample table) or an in-memory uint8
array, saved once as ``images.npy`` in the run folder for the galleries and the duplicate finder.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..data.class_names import class_names
from ..errors import InputError
from .files import atomic_save_npy, check_file, lock_file
from .folders import remove_leftovers
from .layout import IMAGES, LOCK, META
from .schema import EPOCH_FIELDS
from .store import RunError, RunLockedError, RunStore


def sample_table(labels: Sequence[int] | np.ndarray, classes: Sequence[str], *,
                 paths: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                 true_labels: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
    """The sample table of a run folder from labels (``(N,)`` ints in ``[0, len(classes))``), class names
    and, optionally, file paths (made absolute), sample ids (default: the path, else the index) and the
    true labels when they are known (they add ``true_label`` and ``is_mislabeled``, for the Evaluate page)."""
    labels = _int_labels(labels, len(classes), "labels")
    n = len(labels)
    if paths is not None and len(paths) != n:
        raise InputError(f"{len(paths)} paths for {n} labels; give one path per sample")
    if ids is not None and len(ids) != n:
        raise InputError(f"{len(ids)} sample ids for {n} labels; give one id per sample")
    absolute = [str(Path(p).expanduser().resolve()) for p in paths] if paths is not None else None
    if ids is None:
        ids = absolute if absolute is not None else [str(i) for i in range(n)]
    names = np.asarray(list(classes), dtype=object)
    samples = pd.DataFrame({"index": np.arange(n), "sample_id": [str(i) for i in ids], "label": labels,
                            "class_name": names[labels], "image_index": np.arange(n)})
    if absolute is not None:
        samples["path"] = absolute
    if true_labels is not None:
        truth = _int_labels(true_labels, len(classes), "true labels")
        if len(truth) != n:
            raise InputError(f"{len(truth)} true labels for {n} labels")
        samples["true_label"] = truth
        samples["is_mislabeled"] = truth != labels
    return samples


def _int_labels(values, num_classes: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{what} must be one integer per sample, got an array of shape {array.shape}")
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise InputError(f"{what} must be integer class indices, got {array.dtype} values")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise InputError(f"{what} must lie in 0..{num_classes - 1} for {num_classes} classes; "
                         f"found {array.min()}..{array.max()}")
    return array


class RunWriter:
    """Writes a run folder from a foreign training, one epoch at a time.

    Parameters
    ----------
    path:
        The run folder to create; it must not hold a run already.
    labels, classes:
        The label each sample trains with, ``(N,)`` ints in the tracker's index order, and the class names.
    paths, images:
        Where the dashboard finds each sample's image: file paths (``(N,)``), or a uint8 array
        ``(N, H, W)`` / ``(N, H, W, C)`` saved into the run folder. Neither: the run has no images.
    samples:
        Instead of ``labels``/``paths``, a ready sample table (as :func:`sample_table` builds, or a
        :class:`~csl_core.data.TrainingSet`'s ``samples``); its extra columns (the injected truth) are kept.
    epochs:
        How many epochs the training will run (the arrays grow if it runs more).
    source, model:
        Recorded in ``meta.json`` and shown by ``info`` and the dashboard, e.g. ``"lightning"``, ``"resnet18"``.
    fields:
        The per-epoch arrays; the tracker's by default (add ``"eval_loss"`` for an eval pass).
    resume_epoch:
        Continue the run already in ``path`` (its training resumed from a checkpoint) at this epoch: the run
        must hold these samples and classes and at least this many finished epochs; later ones are dropped
        (the resumed training writes them again).
    """

    def __init__(self, path: str | Path, *, classes: Sequence[str], labels: Sequence[int] | None = None,
                 paths: Sequence[str] | None = None, images: np.ndarray | None = None,
                 samples: pd.DataFrame | None = None, epochs: int = 1, source: str = "external",
                 model: str = "external", fields: tuple[str, ...] = EPOCH_FIELDS, extra_meta: Mapping | None = None,
                 resume_epoch: int | None = None):
        classes = class_names(classes, "RunWriter's classes")   # NFC; an invisible character refused
        if len(classes) < 2:
            raise InputError(f"a run needs at least two classes, got {classes}")
        if samples is None:
            if labels is None:
                raise InputError("give the labels (and paths or images) or a ready sample table")
            samples = sample_table(labels, classes, paths=paths)
        else:
            missing = [c for c in ("index", "sample_id", "label", "class_name") if c not in samples.columns]
            if missing:
                raise InputError(f"the sample table lacks the column(s) {missing}")
            _int_labels(samples["label"].to_numpy(), len(classes), "the sample table's labels")
        n = len(samples)
        if n == 0:
            raise InputError("the sample table is empty")
        if epochs < 1:
            raise InputError(f"epochs must be at least 1, got {epochs}")
        if images is not None:
            images = _check_images(images, n)
        if "path" in samples.columns:
            absent = [p for p in samples["path"].astype(str) if not Path(p).is_file()]
            if absent:
                raise FileNotFoundError(f"{len(absent)} of {n} image paths do not exist, e.g. {absent[0]!r}")
        self.path = Path(path)
        if (self.path / META).exists() and resume_epoch is None:
            raise RunError(f"{self.path} already holds a run; choose another folder (or resume it from the "
                           "training's checkpoint)")
        self.path.mkdir(parents=True, exist_ok=True)
        self._exit = ExitStack()
        holder = self._exit.enter_context(lock_file(self.path / LOCK, owner=f"writer:{source}"))
        if holder is not None:
            self._exit.close()
            raise RunLockedError(f"{self.path} is being written by process {holder.get('pid')}; choose another folder")
        remove_leftovers(self.path)   # a killed writer's temporary files: no one else writes them now
        self._epoch_began = time.perf_counter()
        self.closed = False
        if resume_epoch is not None:
            try:
                self.store = _reopen(self.path, classes, samples, resume_epoch)
            except BaseException:
                self._exit.close()
                raise
            return
        try:
            meta = {
                "name": self.path.name, "source": source, "classes": classes, "model": model,
                "trainer": source.split(":", 1)[0], "has_ground_truth": "is_mislabeled" in samples.columns,
                "has_test_split": False,
                "versions": {"csl_core": __version__, "python": platform.python_version()},
                **(dict(extra_meta) if extra_meta else {}),
            }
            if images is not None:
                meta["image_shape"] = [int(images.shape[3]), int(images.shape[1]), int(images.shape[2])]
                atomic_save_npy(self.path / IMAGES, images)
            self.store = RunStore.create(self.path, meta=meta, samples=samples, epochs=epochs, fields=fields)
        except BaseException:
            self._exit.close()
            raise
        self._epoch_began = time.perf_counter()
        self.closed = False

    # ------------------------------------------------------------ epochs
    @property
    def finished_epochs(self) -> int:
        return self.store.finished_epochs

    def write_epoch(self, record: Mapping[str, np.ndarray], *, probabilities: np.ndarray | None = None,
                    seconds: float | None = None) -> None:
        """Write one finished epoch: ``record`` maps each field to ``(N,)`` values in sample order, as
        :meth:`CSLTracker.end_epoch` returns them; ``probabilities`` is the ``(N, C)`` mean softmax so far."""
        self._check_open()
        n = self.store.num_samples
        for name, values in record.items():
            if np.shape(values) != (n,):
                raise InputError(f"epoch field '{name}' has shape {np.shape(values)}; expected ({n},), one value "
                                 "per sample")
        if probabilities is not None and np.shape(probabilities) != (n, len(self.store.classes)):
            raise InputError(f"probabilities have shape {np.shape(probabilities)}; expected "
                             f"({n}, {len(self.store.classes)})")
        now = time.perf_counter()
        if seconds is None:
            seconds = now - self._epoch_began
        self._epoch_began = now
        loss = np.asarray(record["loss"], dtype=np.float64)
        bad = np.isinf(loss) | (loss < 0)   # NaN: a sample not seen this epoch
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError(f"epoch {self.store.finished_epochs + 1}: sample {first} has loss {loss[first]!r} "
                             f"({int(bad.sum())} sample(s) so); a loss is a finite number >= 0 (NaN: not seen). "
                             "Nothing of this epoch was written")
        timing = {"seconds": float(seconds),
                  "loss": float(np.nanmean(loss)) if np.isfinite(loss).any() else float("nan"),
                  "accuracy": float(np.mean(record["correct"])) if "correct" in record else float("nan")}
        self.store.write_epoch(self.store.finished_epochs, record, probabilities=probabilities, timing=timing)

    def end_epoch(self, tracker) -> dict[str, np.ndarray]:
        """End the tracker's epoch (its one host copy) and write it, with the tracker's mean probabilities."""
        if tracker.num_samples != self.store.num_samples:
            raise InputError(f"the tracker records {tracker.num_samples} samples but the run has "
                             f"{self.store.num_samples}")
        record = tracker.end_epoch()
        self.write_epoch(record, probabilities=tracker.mean_probabilities())
        return record

    def finish(self, *, embeddings: np.ndarray | None = None, probabilities: np.ndarray | None = None,
               test_accuracy: float | None = None) -> RunStore:
        """Mark the run complete, save penultimate-layer ``embeddings`` ``(N, D)`` (for near-duplicate
        search) and final ``probabilities`` ``(N, C)`` when given, keep the scores, and release the lock."""
        self._check_open()
        try:
            self.store.finish(embeddings=embeddings, probabilities=probabilities, test_accuracy=test_accuracy)
        finally:
            self.close()
        return self.store

    def close(self) -> None:
        """Release the run's lock; the finished epochs stay readable (an unfinished run stays incomplete)."""
        if not self.closed:
            self.closed = True
            self._exit.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RunError(f"{self.path}: the writer is closed")


def _reopen(path: Path, classes: list[str], samples: pd.DataFrame, epoch: int) -> RunStore:
    """The run in ``path``, checked to hold ``samples`` and ``classes``, rolled back to ``epoch`` finished
    epochs and marked incomplete, for a training resumed from its checkpoint at ``epoch``."""
    if not (path / META).is_file():
        raise RunError(f"{path} holds no run to resume; start the training without a checkpoint")
    store = RunStore(path)
    problems = store.problems(deep=True)
    if problems:
        raise RunError(f"{path} cannot be resumed: " + "; ".join(problems))
    stored = store.samples()
    same = (store.classes == classes and len(stored) == len(samples)
            and np.array_equal(stored["sample_id"].astype(str).to_numpy(), samples["sample_id"].astype(str).to_numpy())
            and np.array_equal(stored["label"].to_numpy(np.int64), samples["label"].to_numpy(np.int64)))
    if not same:
        raise RunError(f"{path} holds a run of other samples or classes than this training; resume into the run "
                       "this training wrote, or choose another folder")
    if store.finished_epochs < epoch:
        raise RunError(f"{path} has {store.finished_epochs} finished epochs but the checkpoint resumes after epoch "
                       f"{epoch}: the epochs between were never recorded, so the run cannot be continued")
    store.update_meta(finished_epochs=int(epoch), completed=False)
    return store


def _check_images(images: np.ndarray, n: int) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(f"images must be uint8 pixels (0-255), got {images.dtype}; convert with "
                         "(x * 255).round().astype(np.uint8) if they are floats in [0, 1]")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise InputError(f"images must be (N, H, W) or (N, H, W, C) with C 1 or 3 (channels last), got shape "
                         f"{images.shape}")
    if len(images) != n:
        raise InputError(f"{len(images)} images for {n} samples; give one image per sample, in sample order")
    return np.ascontiguousarray(images)


def stored_images(store: RunStore) -> np.ndarray | None:
    """The run's ``images.npy`` (written by :class:`RunWriter`), memory-mapped, once its shape and type
    are checked against the run: ``(N, H, W, C)`` uint8, or ``None`` when the run has none."""
    file = store.path / IMAGES
    if not os.path.lexists(file):
        return None
    check_file(file)   # a FIFO or a link: refused, never waited on or followed
    try:
        images = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is not a readable image array ({e}); delete it or write the run again") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != store.num_samples:
        raise RunError(f"{file} holds {images.dtype} {images.shape}; expected uint8 ({store.num_samples}, H, W, C)")
    return images
