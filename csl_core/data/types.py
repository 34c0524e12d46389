"""What every source becomes: decoded images in memory (:class:`ImageSource`) and what a run trains on
(:class:`TrainingSet`), plus the error type for input a person must fix."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import (
    DataError,  # noqa: F401  (the data layer's error, importers take it from here)
    InputError,
)
from .dataset import IndexedDataset

if TYPE_CHECKING:  # pandas loads where a table is made, not at import: `csl-clean --help` stays fast
    import pandas as pd


@dataclass
class ImageSource:
    """Decoded images in memory.

    ``images`` is uint8 ``(N, H, W, C)``; ``ids`` are stable ids (file paths for sources on disk);
    ``skipped`` lists the files that could not be used, each ``{"id", "reason"}``; ``notes`` the files
    used but worth a word (e.g. reached through a link that leads outside the root), each ``{"id", "note"}``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    ids: list[str]
    paths: list[str] | None = None
    skipped: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)   # used, but worth a line in the report: ``{"id", "note"}``

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.dtype.kind == "f" and labels.size and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0]
            raise DataError(f"labels must be integers or class names; got {bad!r}")
        if labels.dtype.kind not in "iuf" and labels.size:
            raise DataError(f"labels must be integer class indices, got {labels.dtype} values")
        self.labels = labels.astype(np.int64)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes; "
                            f"found {self.labels.min()}..{self.labels.max()}")
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if len(self.images) != len(self.labels) or len(self.ids) != len(self.labels):
            raise InputError("images, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (RGB)."""
        return int(self.images.shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])


@dataclass
class TrainingSet:
    """What a run trains on. ``samples`` has one row per training sample, in training-index order."""

    spec: str
    source: ImageSource
    samples: pd.DataFrame
    test: ImageSource | None = None

    @property
    def classes(self) -> list[str]:
        """The class names; a label is an index into them."""
        return self.source.classes

    @property
    def labels(self) -> np.ndarray:
        """The label every sample trains with ``(N,)`` int64 (after any injected noise)."""
        return self.samples["label"].to_numpy(np.int64)

    @property
    def image_index(self) -> np.ndarray:
        """For every sample, the row of ``source.images`` it shows ``(N,)`` int64."""
        return self.samples["image_index"].to_numpy(np.int64)

    @property
    def has_ground_truth(self) -> bool:
        """Whether the sample table knows which labels are wrong (injected noise or duplicates)."""
        return "is_mislabeled" in self.samples.columns

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        """The uint8 ``(H, W, C)`` image that training sample ``index`` shows."""
        return self.source.images[self.image_index[index]]

    def dataset(self) -> IndexedDataset:
        """The training samples as ``(x, y, index)`` for a ``DataLoader``."""
        return IndexedDataset(self.source.images, self.image_index, self.labels)

    def test_dataset(self) -> IndexedDataset | None:
        """The source's test split as ``(x, y, index)``, or ``None`` when it has none."""
        if self.test is None:
            return None
        return IndexedDataset(self.test.images, np.arange(len(self.test)), self.test.labels)
