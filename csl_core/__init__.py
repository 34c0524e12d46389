"""csl_core: find mislabeled and duplicate images by Cumulative Sample Loss, from one training run."""
from __future__ import annotations

__version__ = "0.1.0"

from .data import DataError, IndexedDataset, TrainingSet, build_training_set  # noqa: E402
from .scores import compute_scores, suspicion  # noqa: E402
from .store import RunError, RunStore, list_runs  # noqa: E402
from .tracker import CSLTracker  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = ["CSLTracker", "DataError", "IndexedDataset", "RunError", "RunStore", "TrainConfig", "TrainingSet",
           "build_training_set", "compute_scores", "list_runs", "suspicion", "train", "__version__"]
