"""The run folder: the unit of persistence shared by the CLI, the dashboard and the benchmark.

Every file a run folder holds, who writes it, its format and how it is checked: the table in
:mod:`csl_core.run.layout` (``RUN_FILES``), whose names every reader and writer uses.

Every file is written to a temporary name and renamed, so a reader never sees half a file. Epoch
columns are written in place into preallocated arrays and only count once ``meta.json`` says the epoch
is finished: a kill loses at most the epoch in flight.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import files as run_files
from . import layout
from .errors import RunError, RunLockedError  # noqa: F401  (importers take both from the store)
from .files import (
    allocate_array,
    array_in_place,
    atomic_file,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    real_folder,
    sha256_bytes,
    sha256_file,
)
from .folders import run_is_locked, run_lock
from .health import cached_problems, consistency_problems
from .kept import KeptResults
from .layout import ARRAYS, CHECKPOINT, EMBEDDINGS, FORMAT_VERSION, META, PROBABILITIES, REPORT, SAMPLES, array_name
from .schema import ARRAY_DTYPES, EPOCH_FIELDS
from .tables import (
    RowChunks,
    array_checksum_problems,
    check_array_file,
    column_digest,
    read_meta,
    read_report,
    read_sample_table,
    write_meta,
)

if TYPE_CHECKING:
    from ..data import TrainingSet



def run_problems(path: str | Path) -> list[str]:
    """What is wrong with the run folder ``path`` (see :meth:`RunStore.problems`), with the agreement of its
    files (:func:`~csl_core.run.health.consistency_problems`): the one damage check every page shares. Cheap
    enough for a dashboard to call for every run it lists (computed again only when a file changes)."""
    path = Path(path)

    def compute() -> list[str]:
        store = RunStore(path)
        return store.problems() or consistency_problems(store.path, store.meta)

    return cached_problems(path, compute)


class RunStore(KeptResults):
    """A run folder on disk. Cheap to open: nothing large is read until asked for. What a completed run
    keeps (scores, class-average losses, evaluations) comes from :class:`~csl_core.run.kept.KeptResults`."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if not (self.path / META).is_file():
            raise RunError(f"{self.path} is not a run folder (no meta.json); train one with "
                           "`python -m csl_core train --out PATH`")
        self._samples: pd.DataFrame | None = None
        self._samples_mtime = None
        # True: derived results are computed, never kept (a run only viewed, or a folder this process cannot write)
        self.read_only = bool(read_only) or not os.access(self.path, os.W_OK)
        self.meta  # read once on opening: a damaged meta.json is said here, with the file's name

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, *, meta: dict, samples: pd.DataFrame, epochs: int,
               fields: tuple[str, ...] = EPOCH_FIELDS) -> RunStore:
        """Lay out a new run folder with arrays preallocated for ``epochs`` epochs."""
        path = Path(path)
        if (path / META).exists():
            raise RunError(f"{path} already holds a run; resume it (--resume) or choose another --out")
        real_folder(path / ARRAYS)
        n = len(samples)
        for name in fields:
            allocate_array(path / array_name(name), n, epochs, ARRAY_DTYPES.get(name, np.float32))
        table = samples.to_csv(index=False).encode()
        atomic_write_bytes(path / SAMPLES, table)
        meta = {**meta, "format_version": FORMAT_VERSION, "num_samples": n, "epochs": epochs,
                "finished_epochs": 0, "fields": list(fields), "created": time.time(),
                "checksums": {SAMPLES: {"size": len(table), "sha256": sha256_bytes(table)}}}
        write_meta(path / META, meta)
        if (path / REPORT).is_symlink() or not (path / REPORT).exists():   # a link is replaced, never followed
            atomic_write_json(path / REPORT, {"skipped": [], "epochs": []})
        return cls(path)

    def extend_epochs(self, epochs: int) -> None:
        """Grow the arrays to hold ``epochs`` epochs (resuming a run with more epochs)."""
        meta = self.meta
        if epochs <= meta["epochs"]:
            return
        for name in meta["fields"]:
            old = self.array(name, finished_only=False)
            allocate_array(self.path / array_name(name), meta["num_samples"], epochs, old.dtype, keep=old)
        self.update_meta(epochs=epochs)

    # ------------------------------------------------------------ reading
    @property
    def meta(self) -> dict:
        """``meta.json``, parsed once per version of the file (kept per process, keyed on its path,
        size, modification time and inode), so that a call chain may read it freely. Read-only:
        change it with :meth:`update_meta`."""
        return read_meta(self.path / META)

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
        file = self.path / SAMPLES
        try:
            mtime = file.stat().st_mtime_ns
        except OSError as e:
            raise RunError(f"{file} is missing ({e}); this run cannot be read") from e
        if self._samples is None or mtime != self._samples_mtime:
            try:
                samples = read_sample_table(file, layout.max_bytes(SAMPLES, self.meta))
            except (ValueError, OSError) as e:  # pyarrow's parse errors are ValueErrors too
                raise RunError(f"{file} cannot be read as a sample table ({str(e)[:200]}); the run is "
                               "damaged") from e
            if len(samples) != self.num_samples:
                raise RunError(f"{file} has {len(samples)} rows but meta.json says {self.num_samples} samples; "
                               "the run is damaged")
            self._samples = samples
            self._samples_mtime = mtime
        return self._samples

    def training_set(self, *, download: bool = False, progress: bool = False) -> TrainingSet:
        """The one way to rebuild the data this run trained on: its source, subset and injections from
        ``meta.json``'s config, checked sample by sample against the run's table (:meth:`check_samples`).
        Raises :class:`~csl_core.data.DataError` when the source cannot be read and :class:`RunError`
        when it no longer yields the run's samples. ``download`` lets a built-in source be fetched."""
        from ..config import TrainConfig, training_set_for

        if not self.meta.get("config"):
            raise RunError(f"{self.path}: meta.json names no data source, so the run's images cannot be rebuilt")
        try:  # a run folder may come from a stranger: its config is checked before anything reads it
            config = TrainConfig.from_run(self.meta["config"], self.path / META)
        except ValueError as e:
            raise RunError(str(e)) from e
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
        return (self.path / array_name(name)).is_file()

    def array(self, name: str, *, finished_only: bool = True) -> np.ndarray:
        """A read-only memory map of ``(samples, epochs)``; only finished epochs unless asked."""
        file = self.path / array_name(name)
        if not file.is_file():
            raise RunError(f"{self.path}: this run has no '{name}' array")
        meta = self.meta
        check_array_file(file, int(meta["num_samples"]), int(meta["finished_epochs"]))
        mm = np.load(file, mmap_mode="r")
        return mm[:, : int(meta["finished_epochs"])] if finished_only else mm

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-epoch array over the finished epochs, memory-mapped."""
        meta = self.meta
        finished = int(meta["finished_epochs"])
        out = {}
        for name in meta["fields"]:
            file = self.path / array_name(name)
            check_array_file(file, int(meta["num_samples"]), finished)
            out[name] = np.load(file, mmap_mode="r")[:, :finished]
        return out

    def probabilities(self) -> np.ndarray | None:
        """Mean softmax probabilities ``(samples, classes)``, memory-mapped, or ``None`` if not kept."""
        file = self.path / PROBABILITIES
        if not file.is_file():
            return None
        check_array_file(file, self.num_samples, 1)
        return np.load(file, mmap_mode="r")

    def embeddings(self) -> np.ndarray | None:
        """The penultimate-layer features the trainer saved after the last epoch, ``(samples, features)``
        float, memory-mapped; ``None`` when the run has none, or when the file is not such an array."""
        file = self.path / EMBEDDINGS
        if not os.path.lexists(file):
            return None
        run_files.check_file(file)   # a FIFO or a link is refused (RunError), never waited on or followed
        try:
            values = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if values.ndim != 2 or len(values) != self.num_samples or values.dtype.kind != "f":
            return None
        return values

    def row_reader(self, name: str) -> RowChunks:
        """Array ``name`` over the finished epochs, read a slice of rows at a time with plain file reads:
        for scans of the whole array, which through a memory map would stay in this process's memory."""
        file = self.path / array_name(name)
        if not file.is_file():
            raise RunError(f"{self.path}: this run has no '{name}' array")
        meta = self.meta
        check_array_file(file, int(meta["num_samples"]), int(meta["finished_epochs"]))
        try:
            return RowChunks(file, int(meta["finished_epochs"]))
        except ValueError as e:
            raise RunError(str(e)) from None

    def report(self) -> dict:
        """``report.json``: skipped inputs, per-epoch timings, test accuracy (empty lists before any)."""
        return read_report(self.path / REPORT)

    # ------------------------------------------------------------ writing
    def update_meta(self, **changes) -> dict:
        """Write ``meta.json`` with ``changes`` applied; returns the new meta."""
        meta = {**self.meta, **changes}
        write_meta(self.path / META, meta)
        return meta

    def update_report(self, **changes) -> None:
        """Write ``report.json`` with ``changes`` applied."""
        atomic_write_json(self.path / REPORT, {**self.report(), **changes})

    def write_epoch(self, epoch: int, record: Mapping[str, np.ndarray], *,
                    probabilities: np.ndarray | None = None, timing: dict | None = None) -> None:
        """Write epoch ``epoch`` (0-based) into every array, then mark it finished."""
        meta = self.meta
        if epoch != meta["finished_epochs"]:
            raise RunError(f"epoch {epoch} written out of order (finished: {meta['finished_epochs']})")
        if epoch >= meta["epochs"]:
            self.extend_epochs(epoch + 1)
        checksums = meta.get("checksums", {})
        recorded = checksums.get("arrays", {}) if isinstance(checksums.get("arrays"), dict) else {}
        digests: dict[str, list[str]] = {}
        for name in meta["fields"]:
            if name not in record:
                raise RunError(f"epoch record lacks '{name}'")
            file = self.path / array_name(name)
            check_array_file(file, int(meta["num_samples"]), epoch + 1)  # r+ would zero-pad a short file
            with array_in_place(file) as mm:
                mm[:, epoch] = record[name]
                digests[name] = [*recorded.get(name, [])[:epoch], column_digest(np.asarray(record[name], mm.dtype))]
        if probabilities is not None:
            atomic_save_npy(self.path / PROBABILITIES, probabilities.astype(np.float32))
        if timing is not None:
            report = self.report()
            report["epochs"] = [e for e in report.get("epochs", []) if e.get("epoch") != epoch] + [
                {"epoch": epoch, **timing}]
            atomic_write_json(self.path / REPORT, report)
        # each column's checksum beside the epoch it finishes: a resume verifies the bytes, not only the sizes
        self.update_meta(finished_epochs=epoch + 1, updated=time.time(),
                         checksums={**self.meta.get("checksums", {}), "arrays": {**recorded, **digests}})

    def save_checkpoint(self, state: dict) -> None:
        """Write ``checkpoint.pt`` atomically and record its size and SHA-256 in ``meta.json``.

        The new checksum is recorded before the file is swapped in, beside the previous checkpoint's: a kill
        at any point leaves a checkpoint ``meta.json`` accepts, and a checkpoint one epoch behind is a state
        the trainer resumes from (it trains that epoch again)."""
        import torch  # the dashboard reads run folders without loading torch

        with atomic_file(self.path / CHECKPOINT) as tmp:
            torch.save(state, tmp)
            record = {"size": os.path.getsize(tmp), "sha256": sha256_file(tmp)}
            previous = self.meta.get("checksums", {}).get(CHECKPOINT, [])
            self._set_checksum(CHECKPOINT, [record, *previous[:1]])

    def _set_checksum(self, name: str, value) -> None:
        meta = self.meta
        self.update_meta(checksums={**meta.get("checksums", {}), name: value})

    def load_checkpoint(self, map_location="cpu") -> dict | None:
        """The checkpoint, after checking it against the size and SHA-256 recorded in ``meta.json``;
        loaded with ``weights_only=True`` (tensors and plain containers only, never code)."""
        import torch

        file = self.path / CHECKPOINT
        if not os.path.lexists(file):
            return None
        run_files.check_file(file)   # never through a link, never a FIFO
        accepted = self.meta.get("checksums", {}).get(CHECKPOINT)
        if accepted is not None:
            size, digest = file.stat().st_size, sha256_file(file)
            if not any(size == r.get("size") and digest == r.get("sha256") for r in accepted):
                raise RunError(f"{file} does not match the checksum recorded in meta.json (size {size}); it is "
                               "damaged or was replaced, so the run cannot be resumed from it. Start a new "
                               "run (the recorded epochs stay readable in the dashboard)")
        try:
            return torch.load(file, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated zip, unpickling refused, ...: never advise weights_only=False
            raise RunError(f"{file} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}); it "
                           "is damaged or not a checkpoint of this tool, so the run cannot be resumed from "
                           "it. Start a new run (the recorded epochs stay readable in the dashboard)") from None

    def problems(self, *, deep: bool = False) -> list[str]:
        """What is wrong with this run folder, one sentence per damaged file (empty when healthy).

        Checks (with a few small reads) that ``meta.json`` is whole, every array has the size its header and
        ``meta.json`` promise and the sample table is there; ``deep`` (done before a resume) also reads the
        sample table and checks it and the checkpoint against the checksums recorded in ``meta.json``."""
        found = []
        try:
            meta = self.meta
        except RunError as e:
            return [str(e)]
        for name in meta["fields"]:
            try:
                check_array_file(self.path / array_name(name), int(meta["num_samples"]),
                                 int(meta["finished_epochs"]))
            except RunError as e:
                found.append(str(e))
        table = self.path / SAMPLES
        if not table.is_file() or table.stat().st_size == 0:
            found.append(f"{table} is missing or empty; the run is damaged")
        elif deep:
            self._samples = None
            try:
                self.samples()
            except RunError as e:
                found.append(str(e))
        if deep:
            found += array_checksum_problems(self.path, meta)
        recorded = meta.get("checksums", {}).get(SAMPLES)
        if deep and isinstance(recorded, dict):
            file = self.path / SAMPLES
            data = run_files.read_checked(file, layout.max_bytes(SAMPLES, meta)) if file.is_file() else b""
            if len(data) != recorded.get("size") or sha256_bytes(data) != recorded.get("sha256"):
                found.append(f"{file} does not match the checksum recorded in meta.json when the run was "
                             f"created (size {len(data)}, recorded {recorded.get('size')}): it was changed, so "
                             "its rows may no longer be the samples whose losses were recorded")
        if deep:
            try:
                import torch  # noqa: F401 -- load_checkpoint needs it; the dashboard never asks for deep

                state = self.load_checkpoint()
                if state is not None and not isinstance(state, dict):
                    found.append(f"{self.path / CHECKPOINT} is not a checkpoint of this tool")
            except RunError as e:
                found.append(str(e))
        return found

    # ------------------------------------------------------------ one trainer at a time
    @contextmanager
    def lock(self, owner: str = "trainer"):
        """Hold the run's ``lock`` while training (see :func:`run_lock`)."""
        with run_lock(self.path, owner=owner):
            yield

    def is_locked(self) -> bool:
        """Whether a live process holds this run's lock now."""
        return run_is_locked(self.path)
