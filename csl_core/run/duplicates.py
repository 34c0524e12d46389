"""Duplicates of a run folder: the neighbour search and content hashes, cached in ``neighbours.npz``,
grouped at a threshold by the pure functions of :mod:`csl_core.analysis.duplicates`."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.duplicates import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_THRESHOLD,
    HASH_BYTES,
    DuplicateReport,
    NeighbourIndex,
    content_hashes,
    duplicate_groups,
    duplicate_score,
    group_labels,
    member_similarity,
    nearest_neighbours,
)
from .files import atomic_file
from .layout import EMBEDDINGS, NEIGHBOURS
from .store import RunError, RunStore, check_array_file

NEIGHBOURS_FILE = NEIGHBOURS
CACHE_VERSION = 1


def find_duplicates(run: str | Path | RunStore, *, threshold: float = DEFAULT_THRESHOLD,
                    k: int = DEFAULT_NEIGHBOURS, recompute: bool = False, progress: bool = False,
                    labels: np.ndarray | None = None, csl: np.ndarray | None = None) -> DuplicateReport:
    """Duplicate groups of ``run`` at ``threshold``; the neighbour search is cached in ``neighbours.npz``.

    ``labels`` and ``csl`` (one per sample) are read from the run unless given, e.g. by a caller that
    already holds its scores (reading a 1.28M-row sample table takes seconds).
    """
    store = run if isinstance(run, RunStore) else RunStore(run)
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"the threshold is a cosine similarity in [-1, 1], got {threshold}")
    for name, given in (("labels", labels), ("csl", csl)):
        if given is not None and len(given) != store.num_samples:
            raise ValueError(f"{name} has {len(given)} values for the run's {store.num_samples} samples")
    index, notes = neighbour_index(store, k=k, recompute=recompute, progress=progress)
    labels = np.asarray(labels if labels is not None else store.samples()["label"], dtype=np.int64)
    exact_of = index.exact_of
    groups = group_labels(index.indices, index.similarities, threshold=threshold, exact_of=exact_of)
    similarity = member_similarity(groups, index.indices, index.similarities, exact_of=exact_of)
    csl = np.asarray(csl, dtype=np.float64) if csl is not None else _csl(store)
    table = duplicate_groups(groups, labels, csl, similarity=similarity, exact_of=exact_of)
    per_sample = pd.DataFrame({
        "group": groups,
        "similarity": similarity,
        "duplicate_score": duplicate_score(index.indices, index.similarities, labels, exact_of=exact_of),
        "exact_of": exact_of if exact_of is not None else np.arange(len(labels)),
        "csl": csl,
    }, index=pd.RangeIndex(len(labels), name="index"))
    return DuplicateReport(threshold=threshold, groups=table, samples=per_sample, notes=notes)


def neighbour_index(store: RunStore, *, k: int = DEFAULT_NEIGHBOURS, recompute: bool = False,
                    progress: bool = False) -> tuple[NeighbourIndex, list[str]]:
    """The cached neighbour search and content hashes of a run, computed and saved when missing or stale."""
    notes: list[str] = []
    embeddings_file = store.path / EMBEDDINGS
    stamp = _stamp(embeddings_file)
    cached = None if recompute else _read_cache(store.path / NEIGHBOURS_FILE, stamp, k, store.num_samples)
    if cached is not None:
        if stamp is None:
            notes.append(_NO_EMBEDDINGS)
        if cached.hashes is None:
            notes.append(_NO_IMAGES)
        return cached, notes
    began = time.perf_counter()
    if stamp is not None:
        check_array_file(embeddings_file, store.num_samples, 1)  # whole, before it is mapped
        embeddings = np.load(embeddings_file, mmap_mode="r")
        if len(embeddings) != store.num_samples:
            raise RunError(f"{embeddings_file} has {len(embeddings)} rows for {store.num_samples} samples; "
                           "delete it and run the training's last step again (--resume)")
        indices, similarities = nearest_neighbours(embeddings, k=k, progress=progress)
    else:
        notes.append(_NO_EMBEDDINGS)
        indices = np.empty((store.num_samples, 0), dtype=np.int64)
        similarities = np.empty((store.num_samples, 0), dtype=np.float32)
    images = run_images(store, progress=progress)
    hashes = content_hashes(images, progress=progress) if images is not None else None
    if hashes is None:
        notes.append(_NO_IMAGES)
    index = NeighbourIndex(indices, similarities, hashes, seconds=time.perf_counter() - began)
    _write_cache(store.path / NEIGHBOURS_FILE, index, stamp, k)
    return index, notes


_NO_EMBEDDINGS = ("this run has no embeddings.npy, so only exact duplicates are found; a run of ours gets it when "
                  "training finishes (`python -m csl_core train --out RUN --resume`), a run from your own training "
                  "from RunWriter.finish(embeddings=...) or `import --embeddings`")
_NO_IMAGES = ("the run's images could not be loaded, so exact duplicates are not hashed; make its data "
              "source available where it was when the run was trained")


FOREIGN_IMAGE_SIZE = 64  # runs from other training: their files are decoded at this size for content hashes


def run_images(store: RunStore, *, progress: bool = False) -> np.ndarray | None:
    """The decoded uint8 ``(N, H, W, C)`` image of every training sample of ``store``, or ``None`` when
    :meth:`RunStore.training_set` cannot rebuild the run's samples (source gone or changed)."""
    from ..data import DataError
    from .writer import stored_images

    try:
        stored_pixels = stored_images(store)
    except RunError:
        return None  # a damaged images.npy: no content hashes (the page notes it)
    if stored_pixels is not None:
        return np.asarray(stored_pixels)
    if not store.meta.get("config"):  # trained elsewhere: its files, decoded here, or nothing
        samples = store.samples()
        if "path" not in samples.columns:
            return None
        from ..data.decode import decode_files

        paths = samples["path"].astype(str).tolist()
        try:
            decoded = decode_files(paths, [0] * len(paths), ["any"], image_size=FOREIGN_IMAGE_SIZE, progress=progress)
        except OSError:
            return None
        return decoded.images if len(decoded) == len(paths) else None
    try:
        training_set = store.training_set(progress=progress)
    except (DataError, RunError, OSError):
        return None
    return training_set.source.images[training_set.image_index]


def _csl(store: RunStore) -> np.ndarray:
    if store.finished_epochs == 0:
        return np.full(store.num_samples, np.nan)
    return store.csl()


def _stamp(file: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(file)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _read_cache(file: Path, stamp, k: int, num_samples: int) -> NeighbourIndex | None:
    try:
        with np.load(file, allow_pickle=False) as data:
            if int(data["version"]) != CACHE_VERSION or int(data["k"]) != k:
                return None
            if tuple(data["embeddings_stamp"].tolist()) != (tuple(stamp) if stamp else (-1, -1)):
                return None
            if len(data["indices"]) != num_samples:
                return None
            hashes = data["hashes"] if data["hashes"].size else None
            return NeighbourIndex(data["indices"], data["similarities"], hashes, float(data["seconds"]))
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None


def _write_cache(file: Path, index: NeighbourIndex, stamp, k: int) -> None:
    with atomic_file(file, suffix=".tmp.npz") as tmp:
        np.savez(tmp, version=CACHE_VERSION, k=k, embeddings_stamp=np.asarray(stamp or (-1, -1), dtype=np.int64),
                 indices=index.indices, similarities=index.similarities,
                 hashes=index.hashes if index.hashes is not None else np.empty(0, dtype=f"S{HASH_BYTES}"),
                 seconds=index.seconds)
