"""The run folder: the unit of persistence shared by the CLI, the dashboard and the benchmark.

::

    runs/<name>/
      meta.json          source, classes, model, settings, versions, finished_epochs
      samples.csv        the sample table (index, sample_id, label, class_name, image_index[, truth])
      arrays/<field>.npy per-epoch arrays, samples x epochs, memory-mapped
      probabilities.npy  mean softmax probabilities per sample (suggested label)
      checkpoint.pt      model, optimiser, schedule and tracker state after the last finished epoch
      report.json        skipped inputs, per-epoch timings, test accuracy
      decisions.sqlite   the person's decisions (see decisions.py)

Every file is written to a temporary name and renamed, so a reader never sees half a file. Epoch
columns are written in place into preallocated arrays and only count once ``meta.json`` says the epoch
is finished: a kill loses at most the epoch in flight.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .files import (
    _allocate,
    _is_stale,
    _read_lock,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    lock_file,
    temp_file_beside,
)
from .schema import ARRAY_DTYPES, EPOCH_FIELDS

FORMAT_VERSION = 1


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (missing, locked, incompatible)."""


class RunLockedError(RunError):
    pass


TRUTH_COLUMNS = ("is_mislabeled", "is_duplicate")


def read_sample_table(file: Path) -> pd.DataFrame:
    """A run's ``samples.csv``: ids, class names and paths stay strings ("NA" is a name, not a gap).

    pyarrow's parser, where installed, reads 1.28M rows in a third of the time of pandas' own.
    """
    options = dict(keep_default_na=False, dtype={"sample_id": str, "class_name": str})
    try:
        return pd.read_csv(file, engine="pyarrow", **options)
    except ImportError:
        return pd.read_csv(file, **options)


class RunStore:
    """A run folder on disk. Cheap to open: nothing large is read until asked for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise RunError(f"{self.path} is not a run folder (no meta.json); train one with "
                           "`python -m csl_core train --out PATH`")
        self._samples: pd.DataFrame | None = None
        self._samples_mtime = None

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, *, meta: dict, samples: pd.DataFrame, epochs: int,
               fields: tuple[str, ...] = EPOCH_FIELDS) -> RunStore:
        """Lay out a new run folder with arrays preallocated for ``epochs`` epochs."""
        path = Path(path)
        if (path / "meta.json").exists():
            raise RunError(f"{path} already holds a run; resume it (--resume) or choose another --out")
        (path / "arrays").mkdir(parents=True, exist_ok=True)
        n = len(samples)
        for name in fields:
            _allocate(path / "arrays" / f"{name}.npy", n, epochs, ARRAY_DTYPES.get(name, np.float32))
        atomic_write_csv(path / "samples.csv", samples)
        meta = {**meta, "format_version": FORMAT_VERSION, "num_samples": n, "epochs": epochs,
                "finished_epochs": 0, "fields": list(fields), "created": time.time()}
        atomic_write_json(path / "meta.json", meta)
        if not (path / "report.json").exists():
            atomic_write_json(path / "report.json", {"skipped": [], "epochs": []})
        return cls(path)

    def extend_epochs(self, epochs: int) -> None:
        """Grow the arrays to hold ``epochs`` epochs (resuming a run with more epochs)."""
        meta = self.meta
        if epochs <= meta["epochs"]:
            return
        for name in meta["fields"]:
            old = self.array(name, finished_only=False)
            target = self.path / "arrays" / f"{name}.npy"
            tmp = target.with_name(f"{name}.grow.npy")
            _allocate(tmp, meta["num_samples"], epochs, old.dtype)
            grown = np.load(tmp, mmap_mode="r+")
            grown[:, : old.shape[1]] = old
            grown.flush()
            del grown
            os.replace(tmp, target)
        self.update_meta(epochs=epochs)

    # ------------------------------------------------------------ reading
    @property
    def meta(self) -> dict:
        with open(self.path / "meta.json") as f:
            return json.load(f)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished_epochs(self) -> int:
        return int(self.meta["finished_epochs"])

    @property
    def num_samples(self) -> int:
        return int(self.meta["num_samples"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def samples(self) -> pd.DataFrame:
        """The sample table, cached until the file changes."""
        mtime = (self.path / "samples.csv").stat().st_mtime_ns
        if self._samples is None or mtime != self._samples_mtime:
            self._samples = read_sample_table(self.path / "samples.csv")
            self._samples_mtime = mtime
        return self._samples

    def has_array(self, name: str) -> bool:
        return (self.path / "arrays" / f"{name}.npy").is_file()

    def array(self, name: str, *, finished_only: bool = True) -> np.ndarray:
        """A read-only memory map of ``(samples, epochs)``; only finished epochs unless asked."""
        file = self.path / "arrays" / f"{name}.npy"
        if not file.is_file():
            raise RunError(f"{self.path}: this run has no '{name}' array")
        mm = np.load(file, mmap_mode="r")
        return mm[:, : self.finished_epochs] if finished_only else mm

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-epoch array over the finished epochs, memory-mapped."""
        finished = self.finished_epochs
        out = {}
        for name in self.meta["fields"]:
            out[name] = np.load(self.path / "arrays" / f"{name}.npy", mmap_mode="r")[:, :finished]
        return out

    def probabilities(self) -> np.ndarray | None:
        file = self.path / "probabilities.npy"
        return np.load(file, mmap_mode="r") if file.is_file() else None

    def embeddings(self) -> np.ndarray | None:
        """The penultimate-layer features the trainer saved after the last epoch, ``(samples, features)``
        float, memory-mapped; ``None`` when the run has none, or when the file is not such an array."""
        file = self.path / "embeddings.npy"
        if not file.is_file():
            return None
        try:
            values = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if values.ndim != 2 or len(values) != self.num_samples or values.dtype.kind != "f":
            return None
        return values

    def scores(self) -> pd.DataFrame:
        """Every score of every sample over the finished epochs, joined to the sample table.

        A completed run keeps them in ``scores-<epochs>.parquet`` once computed, so that opening a
        large run again reads one file instead of scanning every per-epoch array.
        """
        from ..analysis.scores import compute_scores

        meta = self.meta
        finished = int(meta["finished_epochs"])
        if finished == 0:
            raise RunError(f"{self.path}: no finished epoch yet, so there are no scores")
        cache = self._kept_file("scores", "parquet")
        if meta.get("completed") and cache.is_file():
            try:
                return pd.read_parquet(cache)
            except (OSError, ValueError):
                cache.unlink(missing_ok=True)  # unreadable: compute again below
        arrays = {name: self.row_reader(name) for name in meta["fields"]}
        scores = compute_scores(arrays, samples=self.samples(), probabilities=self.probabilities(),
                                embeddings=self.embeddings())
        if meta.get("completed"):
            self._keep(cache, lambda file: atomic_write_bytes(file, scores.to_parquet()))
        return scores

    def csl(self) -> np.ndarray:
        """Each sample's CSL: from the kept scores of a completed run, else summed from the loss array."""
        from ..analysis.scores import compute_scores

        cache = self._kept_file("scores", "parquet")
        if self.meta.get("completed") and cache.is_file():
            try:
                return pd.read_parquet(cache, columns=["csl"])["csl"].to_numpy()
            except (OSError, ValueError):
                pass
        return compute_scores({"loss": self.row_reader("loss")})["csl"].to_numpy()

    def class_mean_loss(self) -> np.ndarray:
        """Every class's mean loss per finished epoch, ``(classes, epochs)``: the class-average line of
        the trajectories plot. A completed run keeps it in ``class-loss-<epochs>.npy`` once computed,
        as it keeps its scores; otherwise one pass over the loss array, a slice of rows at a time."""
        from ..analysis.scores import class_averages

        meta = self.meta
        cache = self._kept_file("class-loss", "npy")
        if meta.get("completed") and cache.is_file():
            try:
                kept = np.load(cache)
                if kept.shape == (len(self.classes), int(meta["finished_epochs"])):
                    return kept
            except (OSError, ValueError):
                pass
        means = class_averages(self.row_reader("loss"), self.samples()["label"].to_numpy(np.int64),
                               len(self.classes))
        if meta.get("completed"):
            self._keep(cache, lambda file: atomic_save_npy(file, means))
        return means

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
        ``evaluation-<epochs>.json``, one entry per truth column. ``scores`` (this run's :meth:`scores`)
        spares reading or computing them again when the caller holds them."""
        from ..analysis.metrics import evaluate_scores

        meta = self.meta
        cache = self._kept_file("evaluation", "json")
        kept: dict = {}
        if meta.get("completed") and cache.is_file():
            try:
                kept = json.loads(cache.read_text())
            except (OSError, ValueError):
                kept = {}
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

    def _kept_file(self, kind: str, suffix: str) -> Path:
        """Where a completed run keeps derived data of ``kind``: named after the finished epochs, so that
        a run trained further never reads what its shorter self kept."""
        return self.path / f"{kind}-{int(self.meta['finished_epochs']):04d}.{suffix}"

    def _keep(self, file: Path, write) -> None:
        """Write a kept file with ``write(file)`` and delete what other epoch counts kept of its kind.
        A read-only run folder (or no parquet engine) keeps nothing: the data is computed each time."""
        try:
            write(file)
        except (OSError, ImportError, ValueError):
            return
        kind = file.name.rsplit("-", 1)[0]
        for old in self.path.glob(f"{kind}-*{file.suffix}"):
            if old != file:
                old.unlink(missing_ok=True)

    def row_reader(self, name: str) -> _RowChunks:
        """Array ``name`` over the finished epochs, read a slice of rows at a time with plain file reads:
        for scans of the whole array, which through a memory map would stay in this process's memory."""
        file = self.path / "arrays" / f"{name}.npy"
        if not file.is_file():
            raise RunError(f"{self.path}: this run has no '{name}' array")
        return _RowChunks(file, self.finished_epochs)

    def report(self) -> dict:
        file = self.path / "report.json"
        if not file.is_file():
            return {"skipped": [], "epochs": []}
        with open(file) as f:
            return json.load(f)

    # ------------------------------------------------------------ writing
    def update_meta(self, **changes) -> dict:
        meta = {**self.meta, **changes}
        atomic_write_json(self.path / "meta.json", meta)
        return meta

    def update_report(self, **changes) -> None:
        atomic_write_json(self.path / "report.json", {**self.report(), **changes})

    def write_epoch(self, epoch: int, record: Mapping[str, np.ndarray], *,
                    probabilities: np.ndarray | None = None, timing: dict | None = None) -> None:
        """Write epoch ``epoch`` (0-based) into every array, then mark it finished."""
        meta = self.meta
        if epoch != meta["finished_epochs"]:
            raise RunError(f"epoch {epoch} written out of order (finished: {meta['finished_epochs']})")
        if epoch >= meta["epochs"]:
            self.extend_epochs(epoch + 1)
        for name in meta["fields"]:
            if name not in record:
                raise RunError(f"epoch record lacks '{name}'")
            mm = np.load(self.path / "arrays" / f"{name}.npy", mmap_mode="r+")
            mm[:, epoch] = record[name]
            mm.flush()
            del mm
        if probabilities is not None:
            atomic_save_npy(self.path / "probabilities.npy", probabilities.astype(np.float32))
        if timing is not None:
            report = self.report()
            report["epochs"] = [e for e in report.get("epochs", []) if e.get("epoch") != epoch] + [
                {"epoch": epoch, **timing}]
            atomic_write_json(self.path / "report.json", report)
        self.update_meta(finished_epochs=epoch + 1, updated=time.time())

    def save_checkpoint(self, state: dict) -> None:
        import torch  # the dashboard reads run folders without loading torch

        fd, tmp = temp_file_beside(self.path / "checkpoint.pt")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path / "checkpoint.pt")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, map_location="cpu") -> dict | None:
        import torch

        file = self.path / "checkpoint.pt"
        if not file.is_file():
            return None
        return torch.load(file, map_location=map_location, weights_only=True)

    # ------------------------------------------------------------ one trainer at a time
    @contextmanager
    def lock(self, owner: str = "trainer"):
        """Hold ``lock`` while training; a lock left by a dead process on this host is taken over."""
        file = self.path / "lock"
        with lock_file(file, owner=owner) as holder:
            if holder is not None:
                who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                raise RunLockedError(f"{self.path} is being trained by {who}; stop it first, or delete "
                                     f"{file} if that process is gone")
            yield

    def is_locked(self) -> bool:
        holder = _read_lock(self.path / "lock")
        return bool(holder) and not _is_stale(holder)


class _RowChunks:
    """A ``(samples, epochs)`` .npy read a slice of rows at a time with plain file reads.

    Scoring reads every row once. Through a memory map those pages would stay mapped into the
    reading process (2 GB of RSS for ImageNet x 100 epochs); read like this they stay in the OS cache.
    """

    def __init__(self, file: Path, columns: int):
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)
            self._offset = f.tell()
        if fortran_order or len(shape) != 2:
            raise RunError(f"{file}: expected a C-ordered (samples, epochs) array, found shape {shape}")
        self._file, self._shape, self.dtype, self._columns = Path(file), shape, np.dtype(dtype), columns

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape[0], self._columns

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("_RowChunks reads slices of rows only")
        start, stop, step = rows.indices(self._shape[0])
        if step != 1:
            raise TypeError("_RowChunks reads contiguous rows only")
        width = self._shape[1]
        count = max(0, stop - start) * width
        with open(self._file, "rb") as f:
            f.seek(self._offset + start * width * self.dtype.itemsize)
            block = np.fromfile(f, dtype=self.dtype, count=count)
        return block.reshape(-1, width)[:, : self._columns]


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "meta.json").is_file()]
    return sorted(runs, key=lambda p: (p / "meta.json").stat().st_mtime, reverse=True)
