"""csl_core: find mislabeled and duplicate images by Cumulative Sample Loss, from one training run.

The names below load on first use, so that reading a run folder (the dashboard) does not import torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = [
    "CSLError", "CSLTracker", "DataError", "ImageUnavailable", "IndexedDataset", "RunError", "RunLockedError",
    "RunStore", "RunWriter", "TrainConfig", "TrainingSet", "__version__", "build_training_set", "compute_scores",
    "list_runs", "suspicion", "train",
]
# public name -> the module that defines it
_EXPORTS = {
    "CSLError": "errors", "DataError": "errors", "ImageUnavailable": "errors", "RunError": "errors",
    "RunLockedError": "errors", "CSLTracker": "engine.tracker", "IndexedDataset": "data", "TrainingSet": "data",
    "build_training_set": "data", "compute_scores": "analysis.scores", "suspicion": "analysis.scores",
    "RunStore": "run.store", "RunWriter": "run.writer", "list_runs": "run.folders", "TrainConfig": "config",
    "train": "engine.train",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'csl_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
