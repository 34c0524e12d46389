"""The run folder's ``memorization/`` folder: the stability estimate's models, estimate and comparison.

::

    runs/<name>/memorization/
      settings.json          fraction, seed and training recipe of the subset models (fixed once started)
      models/model-NNNNN.npz one file per finished model: its training subset and its result on every sample
      estimate.parquet       every sample's memorisation estimate, from all finished models
      comparison.json        every score of the run against the estimate, the estimator's noise, the cost
      log.json               each invocation: models trained, workers, wall time
      lock                   held while models are trained

Each model file is written atomically the moment its training finishes, so a kill loses only the
models in flight and the same command continues. Nothing here imports torch: the dashboard reads it.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_write_bytes, atomic_write_json, lock_file, open_checked, read_checked, real_folder
from .layout import (
    KIB,
    MEMORIZATION,
    MEMORIZATION_COMPARISON,
    MEMORIZATION_ESTIMATE,
    MEMORIZATION_LOCK,
    MEMORIZATION_LOG,
    MEMORIZATION_MODEL,
    MEMORIZATION_MODELS,
    MEMORIZATION_SETTINGS,
    MIB,
    file_glob,
    memorization_model_name,
)
from .npzfile import read_npz
from .store import RunError, RunLockedError, RunStore

FORMAT = 1
MODEL_FIELDS = ("in_training", "correct", "p_given")
JSON_MAX_BYTES = 64 * MIB   # settings, comparison and log: kilobytes


class MemorizationFolder:
    """``<run>/memorization/``: read and write what the stability estimate keeps (see the module doc)."""

    def __init__(self, run: str | Path | RunStore):
        self.store = run if isinstance(run, RunStore) else RunStore(run)
        self.path = self.store.path / MEMORIZATION

    # ------------------------------------------------------------ settings
    @property
    def settings_file(self) -> Path:
        return self.store.path / MEMORIZATION_SETTINGS

    def settings(self) -> dict | None:
        """The stored settings, or ``None`` before the first model."""
        if not self.settings_file.is_file():
            return None
        try:
            settings = json.loads(read_checked(self.settings_file, JSON_MAX_BYTES))
        except (OSError, ValueError) as e:
            raise RunError(f"{self.settings_file}: unreadable ({e}); delete {self.path} to start the estimate "
                           "over") from e
        if not isinstance(settings, dict) or settings.get("format") != FORMAT:
            raise RunError(f"{self.settings_file}: not a memorisation settings file of format {FORMAT}; delete "
                           f"{self.path} to start the estimate over")
        return settings

    def begin(self, settings: dict) -> dict:
        """Store ``settings`` for a new estimate, or check that they match the stored ones (models trained
        with other settings must not be mixed into one estimate). Returns the stored settings."""
        settings = json.loads(json.dumps({"format": FORMAT, **settings}))  # as it reads back from disk
        stored = self.settings()
        if stored is None:
            real_folder(self.path)
            atomic_write_json(self.settings_file, settings)
            return settings
        differ = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differ:
            detail = ", ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
            raise RunError(f"{self.path} holds models trained with other settings ({detail}); use the same "
                           f"settings to continue the estimate, or delete {self.path} to start over")
        return stored

    # ------------------------------------------------------------ one file per model
    def model_file(self, model: int) -> Path:
        return self.store.path / memorization_model_name(model)

    def save_model(self, model: int, in_training: np.ndarray, correct: np.ndarray, p_given: np.ndarray,
                   seconds: float) -> None:
        """Keep model ``model``'s subset and its result on every sample (bool, bool, float32 ``(samples,)``)."""
        buffer = io.BytesIO()
        np.savez(buffer, in_training=np.asarray(in_training, dtype=bool), correct=np.asarray(correct, dtype=bool),
                 p_given=np.asarray(p_given, dtype=np.float32), seconds=np.float64(seconds))
        real_folder(self.path)
        atomic_write_bytes(real_folder(self.model_file(model).parent) / self.model_file(model).name, buffer.getvalue())

    def load_model(self, model: int, num_samples: int) -> dict | None:
        """Model ``model``'s arrays, or ``None`` when it has no file yet or the file is damaged (it is then
        trained again). Never unpickles: the file is plain arrays of fixed names, shapes and types."""
        file = self.model_file(model)
        if not file.is_file():
            return None
        try:
            arrays = read_npz(file, MIB + num_samples * 8, {
                **{name: lambda shape, dtype: shape == (num_samples,) for name in MODEL_FIELDS},
                "seconds": lambda shape, dtype: shape == () and dtype.kind in "fiu"})
        except (OSError, RunError):
            return None
        expected = {"in_training": np.bool_, "correct": np.bool_, "p_given": np.float32}
        for name, dtype in expected.items():
            if arrays[name].shape != (num_samples,) or arrays[name].dtype != dtype:
                return None
        p = arrays["p_given"]
        if not (np.all(np.isfinite(p)) and p.min(initial=0) >= 0 and p.max(initial=0) <= 1):
            return None
        arrays["seconds"] = float(arrays["seconds"])
        return arrays

    def finished_models(self) -> list[int]:
        """Numbers of the models that have a file (not yet validated)."""
        folder = self.store.path / MEMORIZATION_MODELS
        if not folder.is_dir():
            return []
        found = []
        for file in folder.glob(Path(file_glob(MEMORIZATION_MODEL)).name):
            number = file.stem.split("-", 1)[1]
            if number.isdigit():
                found.append(int(number))
        return sorted(found)

    # ------------------------------------------------------------ results
    @property
    def estimate_file(self) -> Path:
        return self.store.path / MEMORIZATION_ESTIMATE

    @property
    def comparison_file(self) -> Path:
        return self.store.path / MEMORIZATION_COMPARISON

    def write_estimate(self, estimate: pd.DataFrame) -> None:
        atomic_write_bytes(self.estimate_file, estimate.to_parquet())

    def estimate(self) -> pd.DataFrame | None:
        """Every sample's memorisation estimate (``memorization``, ``memorization_p_given``, ...), or ``None``."""
        file = self.estimate_file
        if not file.is_file():
            return None
        try:
            with open_checked(file, MIB + self.store.num_samples * 4 * KIB) as f:
                estimate = pd.read_parquet(f)
        except (OSError, ValueError) as e:
            raise RunError(f"{file}: unreadable ({e}); run `python -m csl_core memorization` again to "
                           "rewrite it") from e
        if len(estimate) != self.store.num_samples or "memorization" not in estimate.columns:
            raise RunError(f"{file} does not describe this run's {self.store.num_samples} samples; run "
                           "`python -m csl_core memorization` again to rewrite it")
        return estimate

    def write_comparison(self, comparison: dict) -> None:
        atomic_write_json(self.comparison_file, comparison)

    def comparison(self) -> dict | None:
        file = self.comparison_file
        if not file.is_file():
            return None
        try:
            return json.loads(read_checked(file, JSON_MAX_BYTES))
        except (OSError, ValueError) as e:
            raise RunError(f"{file}: unreadable ({e}); run `python -m csl_core memorization` again") from e

    def log(self) -> list[dict]:
        file = self.store.path / MEMORIZATION_LOG
        try:
            entries = json.loads(read_checked(file, JSON_MAX_BYTES)) if file.is_file() else []
        except (OSError, ValueError, RunError):
            entries = []
        return entries if isinstance(entries, list) else []

    def append_log(self, entry: dict) -> None:
        atomic_write_json(self.store.path / MEMORIZATION_LOG, [*self.log(), entry])

    # ------------------------------------------------------------ one estimator at a time
    @contextmanager
    def lock(self):
        """Held while models are trained; a second process is told who holds it."""
        real_folder(self.path)
        file = self.store.path / MEMORIZATION_LOCK
        with lock_file(file, owner="memorization") as holder:
            if holder is not None:
                who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                raise RunLockedError(f"{self.path} is being estimated by {who}; wait for it, or delete {file} "
                                     "if that process is gone")
            yield
