"""Label-noise and duplicate injection for benchmarks: pure functions of arrays and a seed."""
from __future__ import annotations

import numpy as np


def inject_label_noise(labels: np.ndarray, fraction: float, num_classes: int, *,
                       seed: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric label noise: ``floor(fraction * N)`` samples get a class other than their own.

    Returns ``(noisy_labels, flipped_indices)``; indices in ``exclude`` are never chosen.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"noise fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    if fraction == 0:
        return labels.copy(), np.empty(0, dtype=np.int64)
    if num_classes < 2:
        raise ValueError(f"label noise ({fraction:g}) needs at least two classes, got {num_classes}")
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude):
        candidates = np.setdiff1d(candidates, exclude)
    count = int(np.floor(fraction * len(labels)))
    if count > len(candidates):
        raise ValueError(f"cannot flip {count} labels: only {len(candidates)} samples are eligible")
    flipped = np.sort(rng.choice(candidates, size=count, replace=False))
    noisy = labels.copy()
    # An offset in 1..C-1 gives each other class the same chance and never the sample's own.
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=count)) % num_classes
    return noisy, flipped


def inject_duplicates(image_index: np.ndarray, labels: np.ndarray, num_pairs: int, num_classes: int, *,
                      seed: int, exclude: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duplicates with conflicting labels: in each pair ``(a, b)``, ``a`` shows ``b``'s image and gets
    a label other than ``b``'s.

    Returns ``(image_index, labels, pairs)`` with ``pairs`` an ``(num_pairs, 2)`` array of disjoint pairs.
    """
    if num_classes < 2:
        raise ValueError("conflicting duplicates need at least two classes")
    image_index = np.asarray(image_index, dtype=np.int64).copy()
    labels = np.asarray(labels, dtype=np.int64).copy()
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude):
        candidates = np.setdiff1d(candidates, exclude)
    if 2 * num_pairs > len(candidates):
        raise ValueError(f"cannot make {num_pairs} disjoint pairs from {len(candidates)} eligible samples")
    chosen = rng.choice(candidates, size=2 * num_pairs, replace=False)
    pairs = chosen.reshape(num_pairs, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    image_index[a] = image_index[b]
    labels[a] = (labels[b] + rng.integers(1, num_classes, size=num_pairs)) % num_classes
    return image_index, labels, pairs
