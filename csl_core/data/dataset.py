"""The torch-facing dataset: ``(x, y, index)`` batches without per-sample Python work."""
from __future__ import annotations

import numpy as np


class IndexedDataset:
    """A map-style dataset (any ``DataLoader`` takes it) that yields ``(x, y, index)``, with ``x`` a
    uint8 ``(C, H, W)`` tensor.

    Indexing with a list of indices returns a whole batch at once, so a ``DataLoader`` built with
    ``batch_size=None`` over a ``BatchSampler`` does no per-sample Python work. torch is imported
    here rather than with the module, so that reading sources and run folders does not load it.
    """

    def __init__(self, images: np.ndarray, image_index: np.ndarray, labels: np.ndarray):
        import torch

        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, C, H, W)
        # Copies: pandas hands out read-only arrays, which torch cannot wrap without a warning.
        self.image_index = torch.tensor(np.asarray(image_index), dtype=torch.long)
        self.labels = torch.tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        import torch

        index = torch.as_tensor(index, dtype=torch.long)
        return self.images[self.image_index[index]], self.labels[index], index
