"""A sample's image, for whoever shows it (dashboard galleries, tables, reports), read lazily.

:func:`sample_image` is the single entry point. It asks the registered image sources in turn; the
first that recognises the run answers:

- files on disk (ImageFolder, CSV): the sample table's ``path`` column, one file read per image;
- array sources (demo, Fashion-MNIST, CIFAR): the run's data source is rebuilt once from
  ``meta.json`` and kept in memory (a few per process), then indexed by ``image_index``.

A new kind of run adds an image source with :func:`register_image_source`. Thumbnails (small PNG
bytes) sit in an LRU cache, so a gallery page costs only the images it shows, once.
"""
from __future__ import annotations

import base64
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .store import RunStore

#: ``(store) -> (index -> PIL image)`` or ``None`` when the source does not know this run.
ImageSourceFactory = Callable[[RunStore], "Callable[[int], Image.Image] | None"]

THUMBNAIL_SIZE = 96
_sources: list[ImageSourceFactory] = []
_lookups: OrderedDict[tuple[str, float], Callable[[int], Image.Image]] = OrderedDict()
_lookups_lock = threading.Lock()
MAX_OPEN_RUNS = 4


def register_image_source(factory: ImageSourceFactory, *, first: bool = True) -> None:
    """Add a way to find images; ``first`` puts it ahead of the built-in sources."""
    if factory in _sources:
        return
    if first:
        _sources.insert(0, factory)
    else:
        _sources.append(factory)


def sample_image(run_path: str | Path, index: int) -> Image.Image:
    """The image that training sample ``index`` of the run shows, as stored (no resizing)."""
    return _lookup(run_path)(int(index))


def thumbnail(run_path: str | Path, index: int, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG of the sample's image fitted into ``size`` x ``size`` (small images scaled up crisply)."""
    key = _lookup_key(run_path)
    return _thumbnail(key, int(index), int(size))


def thumbnail_data_url(run_path: str | Path, index: int, size: int = THUMBNAIL_SIZE) -> str:
    """The thumbnail as a ``data:image/png;base64,...`` URL (for table image columns)."""
    return "data:image/png;base64," + base64.b64encode(thumbnail(run_path, index, size)).decode()


def clear_cache() -> None:
    """Forget every rebuilt source and thumbnail (e.g. after a run folder was replaced)."""
    with _lookups_lock:
        _lookups.clear()
    _thumbnail.cache_clear()


# ---------------------------------------------------------------- internals

@lru_cache(maxsize=4096)
def _thumbnail(key: tuple[str, float], index: int, size: int) -> bytes:
    image = _lookup_for_key(key)(index)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    scale = size / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Tiny images (8x8 digits, 28x28 clothes) stay crisp with nearest-neighbour scaling.
    resample = Image.NEAREST if max(image.size) <= size // 2 else Image.BILINEAR
    image = image.resize(new_size, resample)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _lookup_key(run_path: str | Path) -> tuple[str, float]:
    path = Path(run_path).resolve()
    # The run's creation time tells a replaced run folder at the same path from the old one.
    return str(path), float(RunStore(path).meta.get("created", 0.0))


def _lookup(run_path: str | Path) -> Callable[[int], Image.Image]:
    return _lookup_for_key(_lookup_key(run_path))


def _lookup_for_key(key: tuple[str, float]) -> Callable[[int], Image.Image]:
    with _lookups_lock:
        if key in _lookups:
            _lookups.move_to_end(key)
            return _lookups[key]
        store = RunStore(key[0])
        for factory in [*_sources, _file_source, _synthetic_source, _array_source]:
            lookup = factory(store)
            if lookup is not None:
                break
        else:
            raise LookupError(f"{store.path}: no image source knows this run (source "
                              f"{store.meta.get('source')!r})")
        _lookups[key] = lookup
        while len(_lookups) > MAX_OPEN_RUNS:
            _lookups.popitem(last=False)
        return lookup


def _file_source(store: RunStore) -> Callable[[int], Image.Image] | None:
    samples = store.samples()
    if "path" not in samples.columns:
        return None
    paths = samples["path"].astype(str).to_numpy()

    def read(index: int) -> Image.Image:
        from ..data import files as data_files

        path = paths[index]
        if not os.path.isfile(path):  # a device or a pipe named by a shared run folder is never opened
            raise FileNotFoundError(f"{path} (sample {index} of the run's sample table) is not a file")
        if os.path.getsize(path) > data_files.MAX_IMAGE_BYTES:
            raise ValueError(f"{path}: over the {data_files.MAX_IMAGE_BYTES // 2**20} MiB limit per image")
        with Image.open(path) as image:
            if image.width * image.height > data_files.MAX_IMAGE_PIXELS:
                raise ValueError(f"{path}: {image.width} x {image.height} pixels is over the decode limit")
            image.load()
            return image.copy()

    return read


def _synthetic_source(store: RunStore) -> Callable[[int], Image.Image] | None:
    """Runs made by scripts/make_synthetic_run.py: images drawn from the index and the true class."""
    from ..data.synthetic import SOURCE, synthetic_image

    if store.meta.get("source") != SOURCE:
        return None
    samples = store.samples()
    classes = samples["true_label" if "true_label" in samples.columns else "label"].to_numpy(np.int64)

    def read(index: int) -> Image.Image:
        return Image.fromarray(synthetic_image(index, classes[index]))

    return read


def _array_source(store: RunStore) -> Callable[[int], Image.Image] | None:
    config = store.meta.get("config")
    if not config or not config.get("data"):
        return None
    from ..config import TrainConfig, training_set_for

    source = training_set_for(TrainConfig.from_run(config, store.path / "meta.json")).source
    images = source.images                                     # (N, H, W, C) uint8
    image_index = store.samples()["image_index"].to_numpy(np.int64)

    def read(index: int) -> Image.Image:
        pixels = images[image_index[index]]
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)

    return read
