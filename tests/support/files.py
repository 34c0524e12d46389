"""Inputs the tests make on disk: small images, class folders, label tables, a pickle that runs code, and a
digest of a folder tree to show that nothing in it changed."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

MARKER = "pwned-by-pickle"
RNG = np.random.default_rng(0)


def png(path: Path, value: int = 128, size: tuple[int, int] = (6, 6), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value).save(path)
    return path


def folder_of_classes(root: Path, classes=("a", "b"), per_class: int = 2) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            png(root / name / f"{i}.png", value=40 * c + i)
    return root


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "path,label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return path


class Payload:
    """A pickle that, if ever unpickled without restriction, creates a file (the attack in the issue)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_cifar(root: Path, where: str = "data_batch_1") -> Path:
    """A cifar-10-batches-py folder whose ``where`` file runs code when unpickled the ordinary way."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(good, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    marker = root / MARKER
    (folder / where).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=2))
    return marker




def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` without following links: file bytes, link texts, folders."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def write_image(path: Path, *, size=(8, 8), mode="RGB", fmt=None, value=None) -> Path:
    """An image file of ``size`` in ``mode`` (random pixels, or all ``value``), in ``fmt`` or by its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}.get(mode, 3)
    base_mode = mode if mode in ("RGB", "RGBA", "L") else "RGB"
    shape = (size[1], size[0]) + ((channels,) if channels > 1 else ())
    pixels = (np.full(shape, value, np.uint8) if value is not None
              else RNG.integers(0, 256, shape, dtype=np.uint8))
    img = Image.fromarray(pixels, base_mode)
    if mode not in ("RGB", "RGBA", "L"):
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path
