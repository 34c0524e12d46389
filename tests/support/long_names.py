"""A folder of one's own with real, long class names: ``ROOT/<class>/<image>.png`` from Fashion-MNIST (Debian's
files) with folder names as people write them ("ankle_boot", "t-shirt_top"), or, without those files, the
digits under the same names. What the demo's one-digit class names never show: captions and labels cut."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

LONG_CLASS_NAMES = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
                    "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def write_long_names_folder(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """``per_class`` images of each class under ``root``; returns ``root``."""
    from csl_core.data.builtin import load_demo, load_fashion_mnist

    try:
        source = load_fashion_mnist()[0]
    except Exception:   # not installed: the digits, under the same names
        source = load_demo()[0]
    rng = np.random.default_rng(seed)
    for label, name in enumerate(LONG_CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        chosen = rng.permutation(np.flatnonzero(source.labels == label))[:per_class]
        for position, index in enumerate(chosen):
            Image.fromarray(source.images[index].squeeze()).save(folder / f"{name}_{position:04d}.png")
    return root
