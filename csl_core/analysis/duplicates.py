"""Duplicates: exact copies by a hash of the decoded pixels, near copies by what the picture looks like,
and the groups whose members carry different labels.

Pure functions take arrays and return arrays or DataFrames; :func:`csl_core.run.duplicates.find_duplicates` is
the edge that reads a run folder and caches the expensive part (``fingerprints.npz``, ``neighbours.npz``) in it.

- Exact duplicates: a BLAKE2 hash of each sample's decoded uint8 pixels (shape included), so the same
  image saved twice, or re-encoded losslessly, hashes alike.
- Near duplicates: each image's 20 nearest thumbnails (:mod:`csl_core.analysis.hashing`: grey, 8 x 8,
  mean removed, by cosine similarity through the one neighbour search,
  :mod:`csl_core.analysis.neighbours`), re-ranked by the aligned correlation of finer 16 x 16
  fingerprints (resized or lightly cropped copies line up). Two samples are linked when their distance
  is at most ``threshold`` (a ratio, :data:`DEFAULT_THRESHOLD`) times the distance to their 10th best
  candidate: a re-encoded, resized or re-exposed copy is far closer to its original than anything else,
  while in a crowd of look-alikes nothing is. Not the trained model's embeddings: a classifier maps every
  picture of a class to nearly one point (cosine > 0.999 between different trousers), so those group
  a class, not a picture. The table that picks the fingerprint and the ratio: docs/bench/duplicates.md.
- Groups: samples joined by an exact match or by a link (connected components, i.e. union-find).
  Moving the threshold only regroups the cached neighbours.
- Per sample, ``duplicate_score``: how close its nearest neighbour with a *different* label is
  (1 - the ratio, clipped at 0; 1 for an exact copy with another label), comparable with CSL in the
  benchmark.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..progress import progress_bar
from .hashing import DEFAULT_RATIO, FINGERPRINT_NEIGHBOURS, MAX_DISTANCE, ratio_links
from .neighbours import DEFAULT_BLOCK_BYTES, nearest_neighbours, normalise  # noqa: F401  (one search)

if TYPE_CHECKING:  # pandas (and scipy) load where a table is made, not at import: `csl-clean --help` stays fast
    import pandas as pd

DEFAULT_THRESHOLD = DEFAULT_RATIO
DEFAULT_NEIGHBOURS = FINGERPRINT_NEIGHBOURS
HASH_BYTES = 16


# ---------------------------------------------------------------- exact duplicates (pure)

def content_hashes(images: np.ndarray, *, progress: bool = False) -> np.ndarray:
    """A 16-byte BLAKE2b digest of each image's decoded pixels, as an ``(N,)`` array of ``S16``.

    ``images`` is uint8 ``(N, H, W[, C])``; the image shape is part of the hash.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"content hashes are taken over decoded uint8 pixels, got {images.dtype}")
    if images.ndim < 3:
        raise ValueError(f"expected images of shape (N, H, W[, C]), got {images.shape}")
    shape = repr(images.shape[1:]).encode()
    digests = np.empty(len(images), dtype=f"S{HASH_BYTES}")
    rows = progress_bar(range(len(images)), desc="hashing images", disable=None if progress else True)
    for i in rows:
        h = hashlib.blake2b(shape, digest_size=HASH_BYTES)
        h.update(np.ascontiguousarray(images[i]).data)
        digests[i] = h.digest()
    return digests


def exact_duplicate_of(hashes: np.ndarray) -> np.ndarray:
    """For each sample, the smallest index with the same content hash (itself when it is unique)."""
    hashes = np.asarray(hashes)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


# ---------------------------------------------------------------- groups and scores (pure)

def group_labels(neighbour_indices: np.ndarray, neighbour_similarities: np.ndarray, *,
                 threshold: float = DEFAULT_THRESHOLD, exact_of: np.ndarray | None = None,
                 extra_pairs: np.ndarray | None = None) -> np.ndarray:
    """The duplicate group of every sample: ``-1`` for a sample alone, else a group number.

    Samples are joined when one is among the other's neighbours with similarity ``>= threshold``, when
    they are exact copies (``exact_of``, from :func:`exact_duplicate_of`), or when they are one of
    ``extra_pairs`` (``(M, 2)`` indices: the crop tier's pairs within its limit); groups are the connected
    components of those links. Group numbers follow the smallest member index.
    """
    neighbour_indices = np.asarray(neighbour_indices)
    neighbour_similarities = np.asarray(neighbour_similarities)
    if neighbour_indices.shape != neighbour_similarities.shape or neighbour_indices.ndim != 2:
        raise ValueError("neighbour indices and similarities must be (N, k) arrays of the same shape, got "
                         f"{neighbour_indices.shape} and {neighbour_similarities.shape}")
    n = len(neighbour_indices)
    if exact_of is not None and len(exact_of) != n:
        raise ValueError(f"exact_of has {len(exact_of)} entries for {n} samples")
    return _group_labels(neighbour_indices, neighbour_similarities, threshold, exact_of, extra_pairs)


def near_duplicate_groups(neighbour_indices: np.ndarray, neighbour_similarities: np.ndarray, *,
                          threshold: float = DEFAULT_THRESHOLD, exact_of: np.ndarray | None = None,
                          max_distance: float = MAX_DISTANCE, crop_pairs: np.ndarray | None = None) -> np.ndarray:
    """The duplicate group of every sample (``-1`` alone) from its nearest neighbours (thumbnails, or
    candidates re-ranked by aligned similarity with ``max_distance`` =
    :data:`~csl_core.analysis.hashing.ALIGNED_MAX_DISTANCE`): linked when the ratio of
    :func:`~csl_core.analysis.hashing.ratio_links` is at most ``threshold``, exact copies, or one of
    ``crop_pairs`` (the crop tier's pairs within its limit, :func:`crop_links`)."""
    if not 0 <= threshold:
        raise ValueError(f"the threshold is a ratio of distances, at least 0; got {threshold}")
    ratios = ratio_links(np.asarray(neighbour_indices), np.asarray(neighbour_similarities), max_distance=max_distance)
    return group_labels(neighbour_indices, -ratios, threshold=-threshold, exact_of=exact_of, extra_pairs=crop_pairs)


def crop_links(pairs: np.ndarray, similarities: np.ndarray, *, max_distance: float,
               max_ratio: float | None = None) -> np.ndarray:
    """The crop tier's pairs (``(M, 2)``) whose aligned distance (1 - similarity) is at most ``max_distance``
    (0: none) and at most ``max_ratio`` (default :data:`~csl_core.analysis.crops.CROP_RATIO`) of the next
    closest pair of either picture (:func:`~csl_core.analysis.crops.crop_ratios`)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[crop_link_mask(pairs, similarities, max_distance=max_distance, max_ratio=max_ratio)]


def crop_link_mask(pairs: np.ndarray, similarities: np.ndarray, *, max_distance: float,
                   max_ratio: float | None = None) -> np.ndarray:
    """Which of the crop tier's pairs are links (:func:`crop_links`), ``(M,)`` bool."""
    from .crops import CROP_RATIO, crop_ratios

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if max_distance <= 0:
        return np.zeros(len(pairs), dtype=bool)
    close = (1.0 - np.asarray(similarities, dtype=np.float64)) <= max_distance
    return close & (crop_ratios(pairs, similarities) <= (CROP_RATIO if max_ratio is None else max_ratio))


def link_closeness(neighbour_indices: np.ndarray, neighbour_similarities: np.ndarray, *,
                   max_distance: float = MAX_DISTANCE) -> np.ndarray:
    """``1 - ratio`` of each link, clipped to [0, 1]: 1 for a copy, 0 at or beyond the local scale."""
    ratios = ratio_links(np.asarray(neighbour_indices), np.asarray(neighbour_similarities), max_distance=max_distance)
    return np.clip(1.0 - ratios, 0.0, 1.0)


def _group_labels(neighbour_indices, neighbour_similarities, threshold, exact_of, extra_pairs=None) -> np.ndarray:
    n = len(neighbour_indices)
    rows, cols = np.nonzero(neighbour_similarities >= threshold)
    source, target = [rows], [neighbour_indices[rows, cols]]
    if extra_pairs is not None and len(extra_pairs):
        extra_pairs = np.asarray(extra_pairs, dtype=np.int64).reshape(-1, 2)
        source.append(extra_pairs[:, 0])
        target.append(extra_pairs[:, 1])
    if exact_of is not None:
        copies = np.flatnonzero(np.asarray(exact_of) != np.arange(n))
        source.append(copies)
        target.append(np.asarray(exact_of)[copies])
    source, target = np.concatenate(source), np.concatenate(target)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(source), dtype=np.int8), (source, target)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n)
    members = np.flatnonzero(sizes[component] > 1)
    groups = np.full(n, -1, dtype=np.int64)
    # Number groups by their smallest member, so the numbering does not depend on scipy's order.
    first_member = np.full(component.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first_member, component, np.arange(n))
    if len(members):
        _, dense = np.unique(first_member[component[members]], return_inverse=True)
        groups[members] = dense.ravel()
    return groups


def duplicate_score(neighbour_indices: np.ndarray, neighbour_similarities: np.ndarray, labels: np.ndarray,
                    *, exact_of: np.ndarray | None = None) -> np.ndarray:
    """Per sample, how likely it is a duplicate with a conflicting label (higher = more suspicious).

    The highest similarity to one of its ``k`` nearest neighbours that carries a different label; 1 for
    an exact copy (same pixels) of a sample with a different label; 0 when no neighbour disagrees.
    """
    neighbour_indices = np.asarray(neighbour_indices)
    labels = np.asarray(labels)
    if len(labels) != len(neighbour_indices):
        raise ValueError(f"{len(labels)} labels for {len(neighbour_indices)} samples")
    n = len(labels)
    disagrees = labels[neighbour_indices] != labels[:, None]
    sims = np.where(disagrees, neighbour_similarities, -np.inf)
    score = sims.max(axis=1, initial=-np.inf) if sims.shape[1] else np.full(n, -np.inf)
    score = np.where(np.isfinite(score), np.maximum(score, 0.0), 0.0)
    if exact_of is not None:
        exact_of = np.asarray(exact_of)
        conflict = _exact_label_conflict(exact_of, labels)
        score = np.where(conflict, 1.0, score)
    return score.astype(np.float64)


def _exact_label_conflict(exact_of: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True for samples whose exact copies do not all carry the same label."""
    lowest = np.full(len(labels), np.iinfo(np.int64).max)
    highest = np.full(len(labels), np.iinfo(np.int64).min)
    np.minimum.at(lowest, exact_of, labels)
    np.maximum.at(highest, exact_of, labels)
    return lowest[exact_of] != highest[exact_of]


def member_similarity(groups: np.ndarray, neighbour_indices: np.ndarray, neighbour_similarities: np.ndarray,
                      *, exact_of: np.ndarray | None = None) -> np.ndarray:
    """For each grouped sample, its highest similarity to another member of its group (NaN if alone).

    Uses the stored neighbour lists (both directions), and 1 for exact copies.
    """
    n = len(groups)
    best = np.full(n, -np.inf)
    rows = np.repeat(np.arange(n), neighbour_indices.shape[1])
    other = neighbour_indices.ravel()
    same = (groups[rows] >= 0) & (groups[rows] == groups[other])
    values = neighbour_similarities.ravel()[same].astype(np.float64)
    np.maximum.at(best, rows[same], values)
    np.maximum.at(best, other[same], values)
    if exact_of is not None:
        exact_of = np.asarray(exact_of)
        copies = np.bincount(exact_of, minlength=n)[exact_of] > 1
        best[copies] = 1.0
    best[(groups < 0) | ~np.isfinite(best)] = np.nan
    return best


def duplicate_groups(groups: np.ndarray, labels: np.ndarray, csl: np.ndarray, *,
                     similarity: np.ndarray, exact_of: np.ndarray | None = None) -> pd.DataFrame:
    """One row per group, ranked by the highest CSL inside it (rank 1 first).

    Columns: ``group``, ``rank``, ``size``, ``members`` (sample indices, highest CSL first),
    ``labels`` (the distinct labels), ``label_conflict``, ``exact`` (all members share their pixels),
    ``max_csl``, ``min_similarity`` / ``max_similarity`` (over the members' best links).
    """
    import pandas as pd

    groups = np.asarray(groups)
    labels = np.asarray(labels)
    csl = np.nan_to_num(np.asarray(csl, dtype=np.float64), nan=-np.inf)
    columns = ["group", "rank", "size", "members", "labels", "label_conflict", "exact", "max_csl",
               "min_similarity", "max_similarity"]
    grouped = np.flatnonzero(groups >= 0)
    if len(grouped) == 0:
        return pd.DataFrame({c: [] for c in columns})
    # Sort members by group, then by CSL descending, so each group's slice is already in display order.
    order = grouped[np.lexsort((grouped, -csl[grouped], groups[grouped]))]
    ids, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    exact_ids = np.asarray(exact_of) if exact_of is not None else None
    records = []
    for group, start, size in zip(ids, starts, sizes):
        members = order[start:start + size]
        member_labels = labels[members]
        sims = similarity[members]
        records.append({
            "group": int(group),
            "size": int(size),
            "members": members.tolist(),
            "labels": sorted(set(member_labels.tolist())),
            "label_conflict": bool((member_labels != member_labels[0]).any()),
            "exact": bool(exact_ids is not None and (exact_ids[members] == exact_ids[members[0]]).all()),
            "max_csl": float(csl[members[0]]),
            "min_similarity": float(np.nanmin(sims)) if np.isfinite(sims).any() else np.nan,
            "max_similarity": float(np.nanmax(sims)) if np.isfinite(sims).any() else np.nan,
        })
    table = pd.DataFrame.from_records(records)
    table = table.sort_values(["max_csl", "group"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table[columns]


def injected_pair_recall(groups: np.ndarray, duplicate_of: np.ndarray, group_table: pd.DataFrame) -> dict:
    """How well the groups recover injected pairs (``duplicate_of[i]`` = i's partner, ``-1`` if none).

    A pair is found when both members share a group that is flagged as a label conflict. A false group
    holds no member of an injected pair.
    """
    groups = np.asarray(groups)
    duplicate_of = np.asarray(duplicate_of)
    a = np.flatnonzero(duplicate_of > np.arange(len(duplicate_of)))
    b = duplicate_of[a]
    conflict = dict(zip(group_table["group"], group_table["label_conflict"])) if len(group_table) else {}
    together = (groups[a] >= 0) & (groups[a] == groups[b])
    flagged = np.array([together[i] and conflict.get(int(groups[a[i]]), False) for i in range(len(a))],
                       dtype=bool)
    injected_groups = set(groups[np.flatnonzero(duplicate_of >= 0)].tolist()) - {-1}
    false_groups = int(sum(1 for g in group_table["group"] if int(g) not in injected_groups))
    return {"pairs": int(len(a)), "found": int(together.sum()), "found_and_flagged": int(flagged.sum()),
            "recall": float(flagged.mean()) if len(a) else float("nan"),
            "groups": int(len(group_table)), "false_groups": false_groups}


@dataclass
class NeighbourIndex:
    """What :func:`find_duplicates` caches in the run folder: everything but the threshold."""

    indices: np.ndarray            # (N, k) int64: nearest pictures, most similar first
    similarities: np.ndarray       # (N, k) float32: their aligned similarity (or thumbnail cosine)
    hashes: np.ndarray | None      # (N,) S16 content hashes, None when the images could not be loaded
    seconds: float = 0.0
    embedding_indices: np.ndarray | None = None        # (N, k) nearest by the run's embeddings (focus page)
    embedding_similarities: np.ndarray | None = None
    # True: candidates re-ranked by aligned similarity of the fine fingerprints; False: thumbnails only
    # (a run whose fine fingerprints cannot be made: its images are gone and fingerprints.npz is older).
    aligned: bool = False
    # The crop tier (csl_core.analysis.crops): pairs aligned continuously, (M, 2) int64, and their
    # similarity (M,) float32; crop_tier False where the crop fingerprints could not be made.
    crop_pairs: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    crop_similarities: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    crop_tier: bool = False
    crops_skipped: bool = False    # the crop tier left out on request (find_duplicates with crop_limit 0)

    @property
    def max_distance(self) -> float:
        """The absolute limit of a link for these similarities."""
        from .hashing import ALIGNED_MAX_DISTANCE

        return ALIGNED_MAX_DISTANCE if self.aligned else MAX_DISTANCE

    @property
    def exact_of(self) -> np.ndarray | None:
        """For each sample, the lowest index with the same content hash ``(N,)`` (itself when unique);
        ``None`` without hashes."""
        return None if self.hashes is None else exact_duplicate_of(self.hashes)


@dataclass
class DuplicateReport:
    """Duplicate groups of a run at one threshold."""

    threshold: float
    groups: pd.DataFrame           # one row per group (see duplicate_groups)
    samples: pd.DataFrame          # one row per sample: group, similarity, duplicate_score, exact_of
    notes: list[str]
    crop_limit: float = 0.0        # the crop tier's limit the groups were made at (0: crops left out)


def member_table(report: DuplicateReport, samples: pd.DataFrame, kept: dict[int, int] | None = None) -> pd.DataFrame:
    """One row per grouped sample, groups in rank order and members by CSL: what ``--csv`` writes. ``kept``
    (group -> the member to keep, :func:`~csl_core.run.duplicates.kept_members`) adds a ``keep`` column."""
    import pandas as pd

    kinds = report.groups["kinds"] if "kinds" in report.groups else [""] * len(report.groups)
    rows = [(g.rank, g.group, g.size, g.label_conflict, g.exact, kind, m)
            for g, kind in zip(report.groups.itertuples(index=False), kinds) for m in g.members]
    frame = pd.DataFrame(rows, columns=["rank", "group", "size", "label_conflict", "exact", "kinds", "index"])
    members = frame["index"].to_numpy(np.int64)
    if kept is not None:
        frame["keep"] = [kept.get(int(g)) == int(m) for g, m in zip(frame["group"], frame["index"])]
    for column in ("sample_id", "label", "class_name", "path", "true_label", "is_duplicate", "duplicate_of"):
        if column in samples.columns:
            frame[column] = samples[column].to_numpy()[members]
    for column in ("csl", "similarity", "duplicate_score"):
        frame[column] = report.samples[column].to_numpy()[members]
    return frame


def not_duplicate_sets(history: pd.DataFrame) -> list[frozenset[int]]:
    """The sample sets a person marked as not duplicates, from ``DecisionLog.history()`` (undone ones left out)."""
    marked = history[(history["action"] == "not-duplicate") & ~history["undone"].astype(bool)]
    return [frozenset(int(s) for s in rows["sample"].dropna()) for _, rows in marked.groupby("batch")]


def is_dismissed(members, dismissed: list[frozenset[int]]) -> bool:
    """Whether one "not duplicates" decision covers every member (a group that grew shows again)."""
    members = frozenset(int(m) for m in members)
    return any(members <= marked for marked in dismissed)
