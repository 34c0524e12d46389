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
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import RunError, RunLockedError
from .files import (
    _allocate,
    _is_stale,
    _read_lock,
    atomic_file,
    atomic_save_npy,
    atomic_write_csv,
    atomic_write_json,
    lock_file,
)
from .kept import KeptResults
from .schema import ARRAY_DTYPES, EPOCH_FIELDS
from .tables import RowChunks, read_meta, read_sample_table, write_meta

if TYPE_CHECKING:
    from ..data import TrainingSet

FORMAT_VERSION = 1


class RunStore(KeptResults):
    """A run folder on disk. Cheap to open: nothing large is read until asked for. What a completed run
    keeps (scores, class-average losses, evaluations) comes from :class:`~csl_core.run.kept.KeptResults`."""

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
        write_meta(path / "meta.json", meta)
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
            _allocate(self.path / "arrays" / f"{name}.npy", meta["num_samples"], epochs, old.dtype, keep=old)
        self.update_meta(epochs=epochs)

    # ------------------------------------------------------------ reading
    @property
    def meta(self) -> dict:
        """``meta.json``, parsed once per version of the file (kept per process, keyed on its path,
        size, modification time and inode), so that a call chain may read it freely. Read-only:
        change it with :meth:`update_meta`."""
        return read_meta(self.path / "meta.json")

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.path.name

    @property
    def finished_epochs(self) -> int:
        """Epochs written completely; only these count in every array and score."""
        return int(self.meta["finished_epochs"])

    @property
    def num_samples(self) -> int:
        """Training samples (rows of every array)."""
        return int(self.meta["num_samples"])

    @property
    def classes(self) -> list[str]:
        """The class names; a label is an index into them."""
        return list(self.meta["classes"])

    def samples(self) -> pd.DataFrame:
        """The sample table, cached until the file changes."""
        mtime = (self.path / "samples.csv").stat().st_mtime_ns
        if self._samples is None or mtime != self._samples_mtime:
            self._samples = read_sample_table(self.path / "samples.csv")
            self._samples_mtime = mtime
        return self._samples

    def training_set(self, *, download: bool = False, progress: bool = False) -> TrainingSet:
        """The one way to rebuild the data this run trained on: its source, subset and injections from
        ``meta.json``'s config, checked sample by sample against the run's table (:meth:`check_samples`).
        Raises :class:`~csl_core.data.DataError` when the source cannot be read and :class:`RunError`
        when it no longer yields the run's samples. ``download`` lets a built-in source be fetched."""
        from ..config import TrainConfig, training_set_for

        config = TrainConfig.from_dict(self.meta.get("config") or {})
        if not isinstance(config.data, str) or not config.data:
            raise RunError(f"{self.path}: meta.json names no data source, so the run's images cannot be rebuilt")
        config.download = download
        training_set = training_set_for(config, progress=progress)
        self.check_samples(training_set)
        return training_set

    def check_samples(self, training_set: TrainingSet) -> None:
        """Raise :class:`RunError` unless ``training_set`` has exactly this run's samples, in order (by
        ``sample_id``): rebuilt data that differs would show, or train on, the wrong images."""
        stored = self.samples()["sample_id"].astype(str).to_numpy()
        rebuilt = training_set.samples["sample_id"].astype(str).to_numpy()
        if len(stored) != len(rebuilt) or not np.array_equal(stored, rebuilt):
            common = min(len(stored), len(rebuilt))
            first = int(np.r_[np.flatnonzero(stored[:common] != rebuilt[:common]), common][0])
            raise RunError(f"{self.path}: the data source {self.meta.get('source')!r} no longer yields the samples "
                           f"this run was trained on ({len(rebuilt)} samples for the run's {len(stored)}, first "
                           f"difference at sample {first}); make the data available as it was, or start a new run")

    def has_array(self, name: str) -> bool:
        """Whether the run records the per-epoch array ``name`` (``eval_loss`` only with an eval pass)."""
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
        """Mean softmax probabilities ``(samples, classes)``, memory-mapped, or ``None`` if not kept."""
        file = self.path / "probabilities.npy"
        return np.load(file, mmap_mode="r") if file.is_file() else None

    def row_reader(self, name: str) -> RowChunks:
        """Array ``name`` over the finished epochs, read a slice of rows at a time with plain file reads:
        for scans of the whole array, which through a memory map would stay in this process's memory."""
        file = self.path / "arrays" / f"{name}.npy"
        if not file.is_file():
            raise RunError(f"{self.path}: this run has no '{name}' array")
        try:
            return RowChunks(file, self.finished_epochs)
        except ValueError as e:
            raise RunError(str(e)) from None

    def report(self) -> dict:
        """``report.json``: skipped inputs, per-epoch timings, test accuracy (empty lists before any)."""
        file = self.path / "report.json"
        if not file.is_file():
            return {"skipped": [], "epochs": []}
        with open(file) as f:
            return json.load(f)

    # ------------------------------------------------------------ writing
    def update_meta(self, **changes) -> dict:
        """Write ``meta.json`` with ``changes`` applied; returns the new meta."""
        meta = {**self.meta, **changes}
        write_meta(self.path / "meta.json", meta)
        return meta

    def update_report(self, **changes) -> None:
        """Write ``report.json`` with ``changes`` applied."""
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
        """Write ``checkpoint.pt`` (model, optimiser, schedule and tracker state), atomically."""
        import torch  # the dashboard reads run folders without loading torch

        with atomic_file(self.path / "checkpoint.pt") as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, map_location="cpu") -> dict | None:
        """The last checkpoint (tensors only: ``weights_only=True``), or ``None`` before the first epoch."""
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
        """Whether a live process holds the trainer's lock."""
        holder = _read_lock(self.path / "lock")
        return bool(holder) and not _is_stale(holder)


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "meta.json").is_file()]
    return sorted(runs, key=lambda p: (p / "meta.json").stat().st_mtime, reverse=True)

