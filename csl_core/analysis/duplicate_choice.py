"""What a duplicate group is made of, and which of its copies to keep.

- **Kinds** (:func:`group_kinds`): ``exact`` (two members share their decoded pixels), ``near`` (two
  members linked by the ratio test of the aligned fingerprints, the sure near duplicates) and ``crop``
  (a "possible crop": members joined only by the crop tier, :mod:`csl_core.analysis.crops`, whose
  precision the benchmark measures apart).
- **Which copy to keep** (:func:`keep_member`), one of :data:`KEEP_POLICIES`: the lowest score (the
  member the model agreed with most: lowest CSL), the highest resolution, the largest file, or the
  first (lowest sample index). Ties go to the lowest score, then the first.

Pure: arrays in, arrays out.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

KINDS = ("exact", "near", "crop")
KIND_TEXT = {"exact": "exact copies", "near": "near copies", "crop": "possible crop"}
KEEP_POLICIES = ("lowest-score", "highest-resolution", "largest-file", "first")
# The member kept by default: the one the model agreed with (lowest CSL); resolution and file size are
# the same for every member of a built-in data set, and the benchmark plants copies of one size.
DEFAULT_KEEP = "lowest-score"


def group_kinds(groups: np.ndarray, without_crops: np.ndarray, exact_of: np.ndarray | None,
                crop_pairs: np.ndarray | None) -> dict[int, tuple[str, ...]]:
    """Each group's kinds (a tuple in :data:`KINDS` order), by group number.

    ``groups``: the groups with every link; ``without_crops``: the groups of the same samples without the
    crop tier's links (exact copies and the ratio test only); ``exact_of``: each sample's lowest index with
    the same pixels (``None``: unknown); ``crop_pairs``: the crop tier's links within its limit, ``(M, 2)``.
    """
    groups, without_crops = np.asarray(groups), np.asarray(without_crops)
    n = len(groups)
    exact_of = np.arange(n) if exact_of is None else np.asarray(exact_of)
    found: dict[int, set[str]] = {int(g): set() for g in np.unique(groups[groups >= 0])}
    copies = np.bincount(exact_of, minlength=n)[exact_of] > 1
    for g in np.unique(groups[copies & (groups >= 0)]):
        found[int(g)].add("exact")
    # near: a group without crops holding more than one distinct picture
    inside = np.flatnonzero(without_crops >= 0)
    if len(inside):
        keys = np.unique(np.stack([without_crops[inside], exact_of[inside]], 1), axis=0)
        components, counts = np.unique(keys[:, 0], return_counts=True)
        mixed = np.isin(without_crops[inside], components[counts > 1])
        for g in np.unique(groups[inside[mixed]]):
            found[int(g)].add("near")
    if crop_pairs is not None and len(crop_pairs):
        pairs = np.asarray(crop_pairs, dtype=np.int64).reshape(-1, 2)
        a, b = pairs[:, 0], pairs[:, 1]
        apart = (without_crops[a] < 0) | (without_crops[a] != without_crops[b])
        for g in np.unique(groups[a[apart]]):
            found[int(g)].add("crop")
    return {g: tuple(k for k in KINDS if k in kinds) for g, kinds in found.items()}


def kinds_text(kinds) -> str:
    """``("exact", "crop")`` -> ``"exact copies + possible crop"``."""
    return " + ".join(KIND_TEXT[k] for k in kinds) or "near copies"


def keep_member(members, policy: str = DEFAULT_KEEP, *, csl: np.ndarray, pixels: np.ndarray | None = None,
                file_bytes: np.ndarray | None = None) -> int:
    """The member of a group to keep under ``policy`` (one of :data:`KEEP_POLICIES`). ``csl``, ``pixels``
    (width x height of each sample's file) and ``file_bytes`` are per sample (NaN: unknown, ranked last);
    ties go to the lowest CSL, then the lowest index."""
    if policy not in KEEP_POLICIES:
        raise InputError(f"unknown keep policy {policy!r}; choose one of {', '.join(KEEP_POLICIES)}")
    members = np.asarray(list(members), dtype=np.int64)
    if len(members) == 0:
        raise InputError("a group has at least one member")
    score = np.nan_to_num(np.asarray(csl, dtype=np.float64)[members], nan=np.inf)
    keys = [members, score]  # np.lexsort: the last key is the primary one
    if policy == "highest-resolution" and pixels is not None:
        keys.append(-np.nan_to_num(np.asarray(pixels, dtype=np.float64)[members], nan=-np.inf))
    elif policy == "largest-file" and file_bytes is not None:
        keys.append(-np.nan_to_num(np.asarray(file_bytes, dtype=np.float64)[members], nan=-np.inf))
    elif policy == "first":
        keys = [members]
    return int(members[np.lexsort(keys)[0]])
