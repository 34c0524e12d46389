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
import re
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .files import (
    _allocate,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    is_lock_held,
    lock_file,
    sha256_bytes,
    sha256_file,
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


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def check_meta(meta: object, file: Path) -> None:
    """Raise :class:`RunError` naming ``file`` unless ``meta`` has what every reader relies on, with
    field names that are plain names (a field becomes a file name under ``arrays/``)."""
    if not isinstance(meta, dict):
        raise RunError(f"{file} is damaged: it does not hold a JSON object")
    for key, kind in (("num_samples", int), ("epochs", int), ("finished_epochs", int), ("fields", list),
                      ("classes", list)):
        if key not in meta:
            raise RunError(f"{file} is damaged or not a run's meta.json: it lacks '{key}'")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise RunError(f"{file} is damaged: '{key}' is {meta[key]!r}, expected {kind.__name__}")
    if not 0 <= meta["finished_epochs"] <= max(meta["epochs"], 0) or meta["num_samples"] < 0:
        raise RunError(f"{file} is damaged: {meta['finished_epochs']} finished of {meta['epochs']} epochs, "
                       f"{meta['num_samples']} samples")
    for name in meta["fields"]:
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise RunError(f"{file} is damaged: array field {name!r} is not a plain name")


def check_array_file(file: Path, rows: int, min_columns: int) -> None:
    """Raise :class:`RunError` naming ``file`` unless it is a ``(rows, >= min_columns)`` .npy whose size on
    disk is what its header promises (a truncated file would read as zeros through a read-write map)."""
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError as e:
        raise RunError(f"{file} is missing; the run is damaged") from e
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is damaged: its .npy header cannot be read ({e})") from e
    if fortran_order or len(shape) != 2 or shape[0] != rows or shape[1] < min_columns:
        raise RunError(f"{file} is damaged: shape {shape}, expected ({rows}, >= {min_columns})")
    if np.dtype(dtype).hasobject:
        raise RunError(f"{file} is damaged: it holds Python objects, which are never loaded")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != expected:
        raise RunError(f"{file} is damaged: {size} bytes on disk, {expected} expected (truncated or padded); "
                       "restore it or train the run again")


# Files only the trainer writes, so that their temporary files are orphans once it holds the lock.
_TRAINER_FILES = ("checkpoint.pt", "embeddings.npy", "probabilities.npy")


def remove_leftovers(path: str | Path) -> list[Path]:
    """Delete the temporary files a trainer killed midway left in the run folder ``path``
    (``.checkpoint.pt.*.tmp``, ``.embeddings.npy.*.tmp``, half-grown arrays, ...). Call it only while
    holding the run's lock: no other trainer can be writing them then. Returns what was removed."""
    path = Path(path)
    found = [p for name in _TRAINER_FILES for p in path.glob(f".{name}.*.tmp")]
    found += list((path / "arrays").glob(".*.npy.tmp")) + list((path / "arrays").glob("*.grow.npy"))
    removed = []
    for file in found:
        if file.is_file() and not file.is_symlink():
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


def run_problems(path: str | Path) -> list[str]:
    """What is wrong with the run folder ``path`` (see :meth:`RunStore.problems`); cheap enough for a
    dashboard to call for every run it lists."""
    try:
        return RunStore(path).problems()
    except RunError as e:
        return [str(e)]


class RunStore:
    """A run folder on disk. Cheap to open: nothing large is read until asked for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise RunError(f"{self.path} is not a run folder (no meta.json); train one with "
                           "`python -m csl_core train --out PATH`")
        self._samples: pd.DataFrame | None = None
        self._samples_mtime = None
        self.meta  # read once on opening: a damaged meta.json is said here, with the file's name

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
        table = samples.to_csv(index=False).encode()
        atomic_write_bytes(path / "samples.csv", table)
        meta = {**meta, "format_version": FORMAT_VERSION, "num_samples": n, "epochs": epochs,
                "finished_epochs": 0, "fields": list(fields), "created": time.time(),
                "checksums": {"samples.csv": {"size": len(table), "sha256": sha256_bytes(table)}}}
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
        """``meta.json``, checked: a damaged or truncated file is a :class:`RunError` that names it."""
        file = self.path / "meta.json"
        try:
            with open(file, "rb") as f:
                meta = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            raise RunError(f"{file} is damaged or unreadable ({e}); this run cannot be opened. Restore the "
                           "file from a backup, or train the run again") from e
        check_meta(meta, file)
        return meta

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
        file = self.path / "samples.csv"
        try:
            mtime = file.stat().st_mtime_ns
        except OSError as e:
            raise RunError(f"{file} is missing ({e}); this run cannot be read") from e
        if self._samples is None or mtime != self._samples_mtime:
            try:
                samples = read_sample_table(file)
            except (ValueError, OSError) as e:  # pyarrow's parse errors are ValueErrors too
                raise RunError(f"{file} cannot be read as a sample table ({str(e)[:200]}); the run is "
                               "damaged") from e
            if len(samples) != self.num_samples:
                raise RunError(f"{file} has {len(samples)} rows but meta.json says {self.num_samples} samples; "
                               "the run is damaged")
            self._samples = samples
            self._samples_mtime = mtime
        return self._samples

    def has_array(self, name: str) -> bool:
        return (self.path / "arrays" / f"{name}.npy").is_file()

    def array(self, name: str, *, finished_only: bool = True) -> np.ndarray:
        """A read-only memory map of ``(samples, epochs)``; only finished epochs unless asked."""
        file = self.path / "arrays" / f"{name}.npy"
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
            file = self.path / "arrays" / f"{name}.npy"
            check_array_file(file, int(meta["num_samples"]), finished)
            out[name] = np.load(file, mmap_mode="r")[:, :finished]
        return out

    def probabilities(self) -> np.ndarray | None:
        """Mean softmax probabilities ``(samples, classes)``, memory-mapped; ``None`` when not kept."""
        file = self.path / "probabilities.npy"
        if not file.is_file():
            return None
        check_array_file(file, self.num_samples, 1)
        return np.load(file, mmap_mode="r")

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
        scores = compute_scores(arrays, samples=self.samples(), probabilities=self.probabilities())
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
        meta = self.meta
        check_array_file(file, int(meta["num_samples"]), int(meta["finished_epochs"]))
        return _RowChunks(file, int(meta["finished_epochs"]))

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
            file = self.path / "arrays" / f"{name}.npy"
            check_array_file(file, int(meta["num_samples"]), epoch + 1)  # r+ would zero-pad a short file
            mm = np.load(file, mmap_mode="r+")
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
        """Write ``checkpoint.pt`` atomically and record its size and SHA-256 in ``meta.json``.

        The new checksum is recorded before the file is swapped in, beside the previous checkpoint's: a kill
        at any point leaves a checkpoint ``meta.json`` accepts, and a checkpoint one epoch behind is a state
        the trainer resumes from (it trains that epoch again)."""
        import torch  # the dashboard reads run folders without loading torch

        target = self.path / "checkpoint.pt"
        fd, tmp = temp_file_beside(target)
        os.close(fd)
        try:
            torch.save(state, tmp)
            record = {"size": os.path.getsize(tmp), "sha256": sha256_file(Path(tmp))}
            previous = self.meta.get("checksums", {}).get("checkpoint.pt", [])
            self._set_checksum("checkpoint.pt", [record, *previous[:1]])
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _set_checksum(self, name: str, value) -> None:
        meta = self.meta
        self.update_meta(checksums={**meta.get("checksums", {}), name: value})

    def load_checkpoint(self, map_location="cpu") -> dict | None:
        """The checkpoint, after checking it against the size and SHA-256 recorded in ``meta.json``;
        loaded with ``weights_only=True`` (tensors and plain containers only, never code)."""
        import torch

        file = self.path / "checkpoint.pt"
        if not file.is_file():
            return None
        accepted = self.meta.get("checksums", {}).get("checkpoint.pt")
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
                check_array_file(self.path / "arrays" / f"{name}.npy", int(meta["num_samples"]),
                                 int(meta["finished_epochs"]))
            except RunError as e:
                found.append(str(e))
        table = self.path / "samples.csv"
        if not table.is_file() or table.stat().st_size == 0:
            found.append(f"{table} is missing or empty; the run is damaged")
        elif deep:
            self._samples = None
            try:
                self.samples()
            except RunError as e:
                found.append(str(e))
        recorded = meta.get("checksums", {}).get("samples.csv")
        if deep and isinstance(recorded, dict):
            file = self.path / "samples.csv"
            data = file.read_bytes() if file.is_file() else b""
            if len(data) != recorded.get("size") or sha256_bytes(data) != recorded.get("sha256"):
                found.append(f"{file} does not match the checksum recorded in meta.json when the run was "
                             f"created (size {len(data)}, recorded {recorded.get('size')}): it was changed, so "
                             "its rows may no longer be the samples whose losses were recorded")
        if deep:
            try:
                import torch  # noqa: F401 -- load_checkpoint needs it; the dashboard never asks for deep

                state = self.load_checkpoint()
                if state is not None and not isinstance(state, dict):
                    found.append(f"{self.path / 'checkpoint.pt'} is not a checkpoint of this tool")
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
        return is_lock_held(self.path / LOCK_NAME)


LOCK_NAME = "lock"


@contextmanager
def run_lock(path: str | Path, owner: str = "trainer"):
    """Hold the lock of the run folder ``path`` (created if missing) for the ``with`` block.

    Taken before anything of a new run is written, so that two trainings started into the same folder
    at once cannot both write it. The kernel releases it when the holder dies; a second holder gets a
    :class:`RunLockedError` that names the first."""
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    file = path / LOCK_NAME
    try:
        with lock_file(file, owner=owner) as holder:
            if holder is not None:
                who = (f"process {holder.get('pid')} on {holder.get('host')} ({holder.get('owner', 'trainer')})"
                       if holder else "another process")
                raise RunLockedError(f"{path} is being trained by {who}; stop it first (the lock is released "
                                     "as soon as that process ends)")
            yield
    finally:
        if created:  # a run that failed before writing anything leaves no empty folder behind
            try:
                path.rmdir()
            except OSError:
                pass


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


def run_folder_for(root: str | Path, name: str) -> Path:
    """The folder of a run called ``name`` under ``root``; ``name`` must be one plain folder name, so
    that a run can only ever be written inside ``root`` (no ``..``, no separators, no hidden names)."""
    name = str(name)
    bad = (not name or name != name.strip() or Path(name).name != name or name.startswith(".")
           or any(c in name for c in "/\\\x00") or any(ord(c) < 32 for c in name))
    if bad:
        raise ValueError(f"run name {name!r} must be a plain folder name: no slashes, not starting with '.', "
                         "no control characters")
    return Path(root) / name


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "meta.json").is_file()]
    return sorted(runs, key=lambda p: (p / "meta.json").stat().st_mtime, reverse=True)
