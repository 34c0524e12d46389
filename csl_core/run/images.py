"""A sample's image, for whoever shows it (dashboard galleries, tables, reports), read lazily.

:func:`sample_image` is the single entry point. The first image source that recognises the run answers:

- files on disk (ImageFolder, CSV): the sample table's ``path`` column, one file read per image;
- runs written from an in-memory array (:mod:`csl_core.run.writer`): the run's ``images.npy``;
- array sources (demo, Fashion-MNIST, CIFAR): the run's training set is rebuilt once by
  :meth:`RunStore.training_set` (which checks every sample id) and kept in memory (a few runs per
  process), then indexed by sample.

Thumbnails (small PNG bytes) sit in an LRU cache, so a gallery page costs only the images it shows, once.
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

from ..errors import InputError
from .errors import ImageUnavailable
from .layout import IMAGES
from .store import RunError, RunStore

THUMBNAIL_SIZE = 96
_lookups: OrderedDict[tuple[str, float], Callable[[int], Image.Image]] = OrderedDict()
_lookups_lock = threading.Lock()
MAX_OPEN_RUNS = 4


def sample_image(run_path: str | Path, index: int) -> Image.Image:
    """The image that training sample ``index`` of the run shows, as stored (no resizing)."""
    return _lookup(run_path)(int(index))


def images_present(store: RunStore) -> bool:
    """Whether a run's stored images, or every one of its image files, is there now (cheap: nothing is
    decoded); ``False`` for a run whose images come from its data source."""
    if os.path.lexists(store.path / IMAGES):
        return True
    samples = store.samples()
    return "path" in samples.columns and all(os.path.isfile(p) for p in samples["path"].astype(str))


def thumbnail(run_path: str | Path, index: int, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG of the sample's image fitted into ``size`` x ``size`` (small images scaled up crisply)."""
    key = _lookup_key(run_path)
    return _thumbnail(key, int(index), int(size))


def thumbnail_data_url(run_path: str | Path, index: int, size: int = THUMBNAIL_SIZE) -> str:
    """The thumbnail as a ``data:image/png;base64,...`` URL (for table image columns)."""
    return "data:image/png;base64," + base64.b64encode(thumbnail(run_path, index, size)).decode()


def image_data_url(run_path: str | Path, index: int, *, max_side: int = 1024) -> str:
    """The sample's image as stored (the original file, at its own resolution, for file sources) as a
    ``data:`` URL, scaled down only where it is larger than ``max_side`` px; PNG, or JPEG for photos
    above 256 px (a tenth of the bytes)."""
    image = sample_image(run_path, index)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.BILINEAR)
    buffer = io.BytesIO()
    if max(image.size) > 256 and image.mode != "RGBA":
        image.save(buffer, format="JPEG", quality=90)
        kind = "jpeg"
    else:
        image.save(buffer, format="PNG", optimize=False)
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode()


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
        for factory in (_file_source, _stored_source, _synthetic_source, _array_source):
            lookup = factory(store)
            if lookup is not None:
                break
        else:
            raise ImageUnavailable(f"{store.path}: no image source knows this run (source "
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
        from ..data import decode as data_decode

        path = paths[index]
        if not os.path.isfile(path):  # a device or a pipe named by a shared run folder is never opened
            raise FileNotFoundError(f"{path} (sample {index} of the run's sample table) is not a file")
        if os.path.getsize(path) > data_decode.MAX_IMAGE_BYTES:
            raise InputError(f"{path}: over the {data_decode.MAX_IMAGE_BYTES // 2**20} MiB limit per image")
        with Image.open(path) as image:
            if image.width * image.height > data_decode.MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: {image.width} x {image.height} pixels is over the decode limit")
            image.load()
            return data_decode.upright(image).copy()   # EXIF rotation and 16-bit grey, as in training

    return read


def _stored_source(store: RunStore) -> Callable[[int], Image.Image] | None:
    """Runs written by :class:`~csl_core.run.writer.RunWriter` from an in-memory image array."""
    from .writer import stored_images

    try:
        images = stored_images(store)
    except RunError as e:  # a damaged images.npy: the pages say "image not available" with this reason
        raise ImageUnavailable(str(e)) from None
    if images is None:
        return None

    def read(index: int) -> Image.Image:
        pixels = np.asarray(images[index])
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)

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
    try:
        training_set = store.training_set()
    except RunError as e:  # a changed source: no image rather than the wrong one
        raise ImageUnavailable(str(e)) from None
    images, image_index = training_set.source.images, training_set.image_index  # (N, H, W, C) uint8; (samples,)

    def read(index: int) -> Image.Image:
        pixels = images[image_index[index]]
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)

    return read
