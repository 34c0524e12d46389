"""Synthetic runs: the images of a run made by ``scripts/make_synthetic_run.py`` (source ``synthetic``).

A synthetic run has no pictures on disk; each sample's image is drawn from its index and its true
class (stripes in a colour and at an angle that belong to the class, plus per-sample noise), so a
gallery shows a mislabeled sample looking like its true class, and the same sample always looks
the same.
"""
from __future__ import annotations

import numpy as np

SOURCE = "synthetic"
IMAGE_SIZE = 32
_GOLDEN_ANGLE = np.pi * (3 - np.sqrt(5))


def synthetic_image(index: int, true_label: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """The uint8 ``(size, size, 3)`` image of sample ``index`` whose true class is ``true_label``."""
    colour = np.random.default_rng([7, int(true_label)]).integers(40, 216, 3)
    rng = np.random.default_rng([11, int(index)])
    angle = int(true_label) * _GOLDEN_ANGLE
    frequency = 1.5 + int(true_label) % 5
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    pixels = colour * (0.65 + 0.35 * wave[..., None]) + rng.normal(0, 14, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)
