"""Duplicates of a run folder: the images' fingerprints (content hashes, 8 x 8 thumbnails and 16 x 16 fine
fingerprints, ``fingerprints.npz``, written when a run is made, or here for an older run), the neighbour
searches over them and over the embeddings (``neighbours.npz``), grouped at a threshold by the pure
functions of :mod:`csl_core.analysis.duplicates`.

Near duplicates: each picture's :data:`~csl_core.analysis.hashing.CANDIDATES` nearest thumbnails,
re-ranked by the aligned similarity of the fine fingerprints (the best 10 kept). A run whose fine
fingerprints cannot be made (an older ``fingerprints.npz`` without them, and the images gone) falls back
to the thumbnails' own 10 nearest and their limits."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.crops import CROP_MAX_DISTANCE, CROP_SIZE, crop_prints, duplicate_search
from ..analysis.duplicate_choice import group_kinds
from ..analysis.duplicates import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_THRESHOLD,
    HASH_BYTES,
    DuplicateReport,
    NeighbourIndex,
    content_hashes,
    crop_link_mask,
    crop_links,
    duplicate_groups,
    duplicate_score,
    link_closeness,
    member_similarity,
    near_duplicate_groups,
)
from ..analysis.hashing import FINE_SIZE, THUMBNAIL_SIZE, aligned_neighbours, fine_prints, thumbnails
from ..analysis.neighbours import nearest_neighbours
from ..errors import InputError
from .files import atomic_file
from .images import images_present
from .layout import EMBEDDINGS, FINGERPRINTS, NEIGHBOURS, max_bytes
from .npzfile import read_npz
from .store import RunError, RunStore, check_array_file

CACHE_VERSION = 5  # 3: neighbours re-ranked by aligned similarity (the `aligned` flag); 4: the crop tier; 5: skipped


def find_duplicates(run: str | Path | RunStore, *, threshold: float = DEFAULT_THRESHOLD,
                    crop_limit: float = CROP_MAX_DISTANCE, k: int = DEFAULT_NEIGHBOURS, recompute: bool = False,
                    progress: bool = False, labels: np.ndarray | None = None,
                    csl: np.ndarray | None = None) -> DuplicateReport:
    """Duplicate groups of ``run`` at ``threshold`` (the ratio test) and ``crop_limit`` (the crop tier's
    aligned distance; 0 leaves crops out); the neighbour search is cached in ``neighbours.npz``.

    ``labels`` and ``csl`` (one per sample) are read from the run unless given, e.g. by a caller that
    already holds its scores (reading a 1.28M-row sample table takes seconds).
    """
    store = run if isinstance(run, RunStore) else RunStore(run)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"the threshold is a ratio of distances in [0, 1] (default {DEFAULT_THRESHOLD}), "
                         f"got {threshold}")
    if not 0.0 <= crop_limit <= 0.1:
        raise InputError(f"the crop limit is a distance (1 - correlation) in [0, 0.1] (default "
                         f"{CROP_MAX_DISTANCE}; 0 leaves crops out), got {crop_limit}")
    for name, given in (("labels", labels), ("csl", csl)):
        if given is not None and len(given) != store.num_samples:
            raise InputError(f"{name} has {len(given)} values for the run's {store.num_samples} samples")
    index, notes = neighbour_index(store, k=k, recompute=recompute, progress=progress, crops=crop_limit > 0)
    labels = np.asarray(labels if labels is not None else store.samples()["label"], dtype=np.int64)
    exact_of = index.exact_of
    without_crops = near_duplicate_groups(index.indices, index.similarities, threshold=threshold, exact_of=exact_of,
                                          max_distance=index.max_distance)
    crops = crop_links(index.crop_pairs, index.crop_similarities, max_distance=crop_limit)
    groups = without_crops if not len(crops) else near_duplicate_groups(
        index.indices, index.similarities, threshold=threshold, exact_of=exact_of,
        max_distance=index.max_distance, crop_pairs=crops)
    similarity = member_similarity(groups, index.indices, index.similarities, exact_of=exact_of)
    if len(crops):  # a member joined by a crop link: that link's similarity where it is its best
        similarity = _with_crop_similarity(similarity, crops, index, crop_limit)
    closeness = link_closeness(index.indices, index.similarities, max_distance=index.max_distance)
    csl = np.asarray(csl, dtype=np.float64) if csl is not None else _csl(store)
    table = duplicate_groups(groups, labels, csl, similarity=similarity, exact_of=exact_of)
    kinds = group_kinds(groups, without_crops, exact_of, crops)
    table.insert(table.columns.get_loc("exact") + 1, "kinds",
                 [", ".join(kinds.get(int(g), ())) for g in table["group"]] if len(table) else [])
    per_sample = pd.DataFrame({
        "group": groups,
        "similarity": similarity,
        "duplicate_score": duplicate_score(index.indices, closeness, labels, exact_of=exact_of),
        "exact_of": exact_of if exact_of is not None else np.arange(len(labels)),
        "csl": csl,
    }, index=pd.RangeIndex(len(labels), name="index"))
    if index.aligned and not index.crop_tier and crop_limit > 0:
        notes.append(_NO_CROPS)
    return DuplicateReport(threshold=threshold, groups=table, samples=per_sample, notes=notes,
                           crop_limit=crop_limit)


def _with_crop_similarity(similarity: np.ndarray, crops: np.ndarray, index: NeighbourIndex,
                          crop_limit: float) -> np.ndarray:
    """Members' best similarity within their group, the crop links (within ``crop_limit``) included."""
    within = crop_link_mask(index.crop_pairs, index.crop_similarities, max_distance=crop_limit)
    values = index.crop_similarities[within].astype(np.float64)
    best = np.where(np.isnan(similarity), -np.inf, similarity)
    np.maximum.at(best, crops[:, 0], values)
    np.maximum.at(best, crops[:, 1], values)
    return np.where(np.isfinite(best), best, np.nan)


def neighbour_index(store: RunStore, *, k: int = DEFAULT_NEIGHBOURS, recompute: bool = False,
                    progress: bool = False, embeddings: bool = False, crops: bool = True
                    ) -> tuple[NeighbourIndex, list[str]]:
    """The cached neighbour searches and content hashes of a run, computed and saved when missing or stale:
    the nearest thumbnails (duplicates) and, with ``embeddings`` and where the run has them, the nearest
    embeddings (the focus page's look-alikes; the duplicate search does not wait for them). ``crops=False``
    leaves the crop tier out (2.3 times the CPU of the rest: ``--crop-limit 0``); a search saved so is
    searched again when crops are wanted."""
    notes: list[str] = []
    embeddings_file = store.path / EMBEDDINGS
    stamp = _stamp(embeddings_file)
    cached = None if recompute else _read_cache(store.path / NEIGHBOURS, stamp, k, store.num_samples)
    if cached is not None and not cached.aligned and images_present(store):
        cached = None   # made while the images were away (thumbnails only): searched again now they are back
    if cached is not None and crops and cached.crops_skipped:
        cached = None   # the crop tier was left out on request: searched again with it
    wanted = embeddings and stamp is not None
    if cached is not None and (not wanted or cached.embedding_indices.shape[1]):
        if cached.hashes is None:
            notes.append(_NO_IMAGES)
        elif not cached.aligned and cached.indices.shape[1]:
            notes.append(_THUMBNAILS_ONLY)
        return cached, notes
    began = time.perf_counter()
    crop_pairs, crop_similarities = np.empty((0, 2), np.int64), np.empty(0, np.float32)
    if cached is not None:
        hashes, indices, similarities = cached.hashes, cached.indices, cached.similarities
        aligned, crop_tier = cached.aligned, cached.crop_tier
        crop_pairs, crop_similarities = cached.crop_pairs, cached.crop_similarities
    else:
        hashes, fingerprints, fine, crop = _fingerprints(store, recompute=recompute, progress=progress)
        aligned, crop_tier = fine is not None, fine is not None and crop is not None and crops
        if fingerprints is None:
            indices = np.empty((store.num_samples, 0), dtype=np.int64)
            similarities = np.empty((store.num_samples, 0), dtype=np.float32)
        elif crop_tier:  # thumbnails' candidates verified by the aligned fine fingerprints, and the crop tier
            indices, similarities, crop_pairs, crop_similarities = duplicate_search(
                fingerprints, fine, crop, keep=k, progress=progress)
        elif aligned:  # candidates by the thumbnail, verified and re-ranked by the aligned fine fingerprints
            indices, similarities = aligned_neighbours(fingerprints, fine, keep=k, progress=progress)
        else:
            indices, similarities = nearest_neighbours(fingerprints, k=k, progress=progress)
    if hashes is None:
        notes.append(_NO_IMAGES)
    elif not aligned and indices.shape[1]:
        notes.append(_THUMBNAILS_ONLY)
    embedding_indices = np.empty((store.num_samples, 0), dtype=np.int64)
    embedding_similarities = np.empty((store.num_samples, 0), dtype=np.float32)
    if wanted:
        check_array_file(embeddings_file, store.num_samples, 1)  # whole, before it is mapped
        features = np.load(embeddings_file, mmap_mode="r")
        if len(features) != store.num_samples:
            raise RunError(f"{embeddings_file} has {len(features)} rows for {store.num_samples} samples; "
                           "delete it and run the training's last step again (--resume)")
        embedding_indices, embedding_similarities = nearest_neighbours(features, k=k, progress=progress)
    index = NeighbourIndex(indices, similarities, hashes, seconds=time.perf_counter() - began,
                           embedding_indices=embedding_indices, embedding_similarities=embedding_similarities,
                           aligned=aligned, crop_pairs=crop_pairs, crop_similarities=crop_similarities,
                           crop_tier=crop_tier, crops_skipped=aligned and not crops)
    if not getattr(store, "read_only", False):  # a run only viewed is never written to
        try:
            _write_cache(store.path / NEIGHBOURS, index, stamp, k)
        except OSError:
            pass  # a folder that cannot be written: searched again next time
    return index, notes


def cached_index(store: RunStore, *, k: int = DEFAULT_NEIGHBOURS) -> NeighbourIndex | None:
    """The neighbour searches already saved in the run folder and still valid, or ``None``; never searches."""
    return _read_cache(store.path / NEIGHBOURS, _stamp(store.path / EMBEDDINGS), k, store.num_samples)


def write_fingerprints(store: RunStore, images: np.ndarray, rows: np.ndarray | None = None, *,
                       chunk: int = 16384) -> None:
    """Save the content hash, thumbnail and fine fingerprint of every training image, ``images[rows]`` (all
    of ``images`` without ``rows``), into the run folder (``fingerprints.npz``), ``chunk`` images at a
    time: done when a run is made, so that its duplicates are found even after the data source has moved."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    hashes = np.empty(len(rows), dtype=f"S{HASH_BYTES}")
    prints = np.empty((len(rows), THUMBNAIL_SIZE ** 2), dtype=np.float32)
    fine = np.empty((len(rows), FINE_SIZE, FINE_SIZE), dtype=np.uint8)
    crop = np.empty((len(rows), CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    for start in range(0, len(rows), chunk):
        block = np.asarray(images[rows[start:start + chunk]])
        hashes[start:start + len(block)] = content_hashes(block)
        prints[start:start + len(block)] = thumbnails(block)
        fine[start:start + len(block)] = fine_prints(block)
        crop[start:start + len(block)] = crop_prints(block)
    _save_fingerprints(store, hashes, prints, fine, crop)


def image_fingerprints(store: RunStore, *, recompute: bool = False, progress: bool = False
                       ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(content hashes (N,) S16, thumbnails (N, 64) float32)`` of a run's images, from
    ``fingerprints.npz``, else computed from the decoded images and saved; ``(None, None)`` when the
    images cannot be loaded."""
    hashes, prints, _ = run_fingerprints(store, recompute=recompute, progress=progress)
    return hashes, prints


def run_fingerprints(store: RunStore, *, recompute: bool = False, progress: bool = False
                     ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(content hashes (N,) S16, thumbnails (N, 64) float32, fine fingerprints (N, 16, 16) uint8)``
    of a run's images, from ``fingerprints.npz``, else computed from the decoded images and saved. A file
    written before the fine fingerprints existed keeps its hashes and thumbnails and gets the fine
    fingerprints from the images; where those cannot be loaded, the fine fingerprints are ``None``.
    ``(None, None, None)`` without a file and without the images."""
    return _fingerprints(store, recompute=recompute, progress=progress)[:3]


def _fingerprints(store: RunStore, *, recompute: bool = False, progress: bool = False) -> tuple:
    """:func:`run_fingerprints` and the crop fingerprints ``(N, 32, 32)`` uint8 (``None`` where neither the
    file nor the images have them)."""
    file = store.path / FINGERPRINTS
    stored = None
    n = store.num_samples
    if not recompute:
        try:
            data = read_npz(file, max_bytes(FINGERPRINTS, {"num_samples": n}), {
                "hashes": lambda shape, dtype: shape == (n,) and dtype == np.dtype(f"S{HASH_BYTES}"),
                "thumbnails": lambda shape, dtype: shape == (n, THUMBNAIL_SIZE ** 2) and dtype == np.float32,
                "fine": lambda shape, dtype: shape == (n, FINE_SIZE, FINE_SIZE) and dtype == np.uint8,
                "crop": lambda shape, dtype: shape == (n, CROP_SIZE, CROP_SIZE) and dtype == np.uint8},
                optional=("fine", "crop"))
            if np.isfinite(data["thumbnails"]).all():
                fine, crop = data.get("fine"), data.get("crop")
                if fine is not None and crop is not None:
                    return data["hashes"], data["thumbnails"], fine, crop
                stored = data["hashes"], data["thumbnails"], fine
        except (FileNotFoundError, RunError):
            pass  # absent, or not this run's: computed again from the images
    images = run_images(store, progress=progress)
    if images is None:
        return (*stored, None) if stored is not None else (None, None, None, None)
    if stored is not None:  # an older file: the fingerprints it lacks are added
        hashes, prints, fine = stored
    else:
        hashes, prints, fine = content_hashes(images, progress=progress), thumbnails(images), None
    fine = fine_prints(images) if fine is None else fine
    crop = crop_prints(images)
    if not getattr(store, "read_only", False):  # a run only viewed is never written to
        try:
            _save_fingerprints(store, hashes, prints, fine, crop)
        except OSError:
            pass  # a folder that cannot be written: computed again next time
    return hashes, prints, fine, crop


def _save_fingerprints(store: RunStore, hashes: np.ndarray, prints: np.ndarray, fine: np.ndarray,
                       crop: np.ndarray) -> None:
    with atomic_file(store.path / FINGERPRINTS, suffix=".tmp.npz") as tmp:
        np.savez(tmp, hashes=hashes, thumbnails=prints, fine=fine, crop=crop)


_NO_IMAGES = ("the run's images could not be loaded, so duplicates cannot be searched; make its data "
              "source available where it was when the run was trained")


_NO_CROPS = ("crops are not searched: this run's fingerprints file predates the crop fingerprints and its images "
             "cannot be loaded to add them")


_THUMBNAILS_ONLY = ("near duplicates come from the 8 x 8 thumbnails alone: this run's fingerprints file predates "
                    "the fine fingerprints and its images cannot be loaded to add them; resized copies are found "
                    "less often (docs/bench/duplicates.md: the thumbnails' own default ratio is 0.2)")


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
        from ..data.decode import decode_in_order

        samples = store.samples()
        if "path" not in samples.columns or not images_present(store):
            return None   # no files, or files away: no search (made again when they are back)
        try:   # a file that cannot be read gets a placeholder that matches nothing: the others are still searched
            return decode_in_order(samples["path"].astype(str).tolist(), image_size=FOREIGN_IMAGE_SIZE,
                                   progress=progress)[0]
        except OSError:
            return None
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
    """The saved searches when they are this run's (shapes, types and indices checked before use), else ``None``
    (searched again; a FIFO or link in the file's place is never waited on or followed)."""
    n = num_samples
    scalar = lambda kinds: lambda shape, dtype: shape == () and dtype.kind in kinds  # noqa: E731
    fits = {"version": scalar("iu"), "k": scalar("iu"), "seconds": scalar("fiu"), "aligned": scalar("b"),
            "crop_tier": scalar("b"), "crops_skipped": scalar("b"),
            "crop_pairs": lambda shape, dtype: len(shape) == 2 and shape[1] == 2
            and shape[0] <= n * k and dtype.kind in "iu",
            "crop_similarities": lambda shape, dtype: len(shape) == 1 and shape[0] <= n * k and dtype.kind == "f",
            "embeddings_stamp": lambda shape, dtype: shape == (2,) and dtype.kind in "iu",
            "hashes": lambda shape, dtype: shape in ((n,), (0,)) and dtype == np.dtype(f"S{HASH_BYTES}")}
    for name in ("indices", "embedding_indices"):   # never more than k columns: nothing unpacks into gigabytes
        fits[name] = lambda shape, dtype: len(shape) == 2 and shape[0] == n and shape[1] <= k and dtype.kind in "iu"
    for name in ("similarities", "embedding_similarities"):
        fits[name] = lambda shape, dtype: len(shape) == 2 and shape[0] == n and shape[1] <= k and dtype.kind == "f"
    try:
        data = read_npz(file, max_bytes(NEIGHBOURS, {"num_samples": n}), fits)
    except (FileNotFoundError, RunError):
        return None
    if int(data["version"]) != CACHE_VERSION or int(data["k"]) != k:
        return None
    if tuple(data["embeddings_stamp"].tolist()) != (tuple(stamp) if stamp else (-1, -1)):
        return None
    arrays = {name: data[name] for name in ("indices", "similarities", "embedding_indices", "embedding_similarities")}
    if (arrays["indices"].shape != arrays["similarities"].shape
            or arrays["embedding_indices"].shape != arrays["embedding_similarities"].shape):
        return None
    for name in ("indices", "embedding_indices"):
        if arrays[name].size and (arrays[name].min() < 0 or arrays[name].max() >= n):
            return None  # never index with what a file names without checking it
    crop_pairs, crop_similarities = data["crop_pairs"].astype(np.int64, copy=False), data["crop_similarities"]
    if len(crop_similarities) != len(crop_pairs) or (crop_pairs.size and (crop_pairs.min() < 0
                                                                          or crop_pairs.max() >= n)):
        return None
    hashes = data["hashes"] if data["hashes"].size else None
    return NeighbourIndex(arrays["indices"].astype(np.int64, copy=False), arrays["similarities"], hashes,
                          float(data["seconds"]), arrays["embedding_indices"].astype(np.int64, copy=False),
                          arrays["embedding_similarities"], aligned=bool(data["aligned"]), crop_pairs=crop_pairs,
                          crop_similarities=crop_similarities, crop_tier=bool(data["crop_tier"]),
                          crops_skipped=bool(data["crops_skipped"]))


def _write_cache(file: Path, index: NeighbourIndex, stamp, k: int) -> None:
    with atomic_file(file, suffix=".tmp.npz") as tmp:
        np.savez(tmp, version=CACHE_VERSION, k=k, embeddings_stamp=np.asarray(stamp or (-1, -1), dtype=np.int64),
                 indices=index.indices, similarities=index.similarities,
                 hashes=index.hashes if index.hashes is not None else np.empty(0, dtype=f"S{HASH_BYTES}"),
                 seconds=index.seconds, embedding_indices=index.embedding_indices,
                 embedding_similarities=index.embedding_similarities, aligned=bool(index.aligned),
                 crop_pairs=index.crop_pairs, crop_similarities=index.crop_similarities,
                 crop_tier=bool(index.crop_tier), crops_skipped=bool(index.crops_skipped))
