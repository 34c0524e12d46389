"""The near-duplicate benchmark: plant copies of known kinds into a real image set and measure, at every
candidate threshold, the recall of each kind and the false grouping (samples grouped with a sample that
is not their planted partner), for each perceptual hash.

Kinds (:data:`KINDS`): an exact copy; a JPEG re-encode (quality 30-95); a resize by x0.5-x2 and back;
a crop of 2-10% of the width and of the height, resized back; brightness and contrast each within
+-20%; a small text overlay (three characters, a quarter of the image high, in a corner).
``scripts/bench_duplicates.py`` runs it and writes docs/bench/duplicates.md.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.crops import CROP_RATIO, crop_prints, crop_ratios, duplicate_search
from ..analysis.duplicates import content_hashes, exact_duplicate_of, group_labels
from ..analysis.hashing import (
    ALIGNED_MAX_DISTANCE,
    DEFAULT_RATIO,
    FINGERPRINT_NEIGHBOURS,
    aligned_neighbours,
    fine_prints,
    hash_neighbours,
    perceptual_hashes,
    ratio_links,
    thumbnails,
)
from ..analysis.neighbours import nearest_neighbours
from ..errors import DataError, InputError

# Where the CIFAR-10N training JPEGs are unpacked: the ``folder`` given, else this environment variable.
CIFAR10N_ENV = "CSL_CIFAR10N_TRAIN"


def cifar10n_folder(folder: str | Path | None = None) -> Path:
    """The folder of CIFAR-10N training JPEGs: ``folder``, else ``$CSL_CIFAR10N_TRAIN``; a
    :class:`~csl_core.errors.DataError` naming both when neither is a folder."""
    chosen = folder or os.environ.get(CIFAR10N_ENV)
    if not chosen:
        raise DataError(f"where are the CIFAR-10N training JPEGs? pass their folder (--cifar10n) or set "
                        f"${CIFAR10N_ENV}")
    path = Path(chosen).expanduser()
    if not path.is_dir() or next(path.glob("*.jpg"), None) is None:
        raise DataError(f"{path} holds no .jpg files: the CIFAR-10N training JPEGs are expected there "
                        f"(--cifar10n or ${CIFAR10N_ENV})")
    return path


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)


def _back(picture, like: np.ndarray) -> np.ndarray:
    out = np.asarray(picture, dtype=np.uint8)
    return out.reshape(like.shape)


def copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return image.copy()


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    _pil(image).save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
    return _back(Image.open(io.BytesIO(buffer.getvalue())).convert(_pil(image).mode), image)


def resize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    picture = _pil(image)
    w, h = picture.size
    small = picture.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR)
    return _back(small.resize((w, h), Image.BILINEAR), image)


def crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    picture = _pil(image)
    w, h = picture.size
    cut_w, cut_h = (max(1, round(size * rng.uniform(0.02, 0.10))) for size in (w, h))
    left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
    box = (left, top, w - (cut_w - left), h - (cut_h - top))
    return _back(picture.crop(box).resize((w, h), Image.BILINEAR), image)


def exposure(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    contrast, brightness = rng.uniform(0.8, 1.2, size=2)
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    return np.clip((pixels - mean) * contrast + mean * brightness, 0, 255).round().astype(np.uint8)


def text(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    picture = _pil(image).copy()
    w, h = picture.size
    font = ImageFont.load_default(size=max(6, h // 4))
    label = "".join(rng.choice(list("0123456789ABCDEFXYZ"), 3))
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    x = 1 if rng.random() < 0.5 else max(1, w - (right - left) - 1)
    y = 1 if rng.random() < 0.5 else max(1, h - (bottom - top) - 2)
    fill = 255 if rng.random() < 0.5 else 0
    draw.text((x - left, y - top), label, font=font, fill=fill if picture.mode == "L" else (fill,) * 3)
    return _back(picture, image)


KINDS = {"copy": copy, "jpeg": jpeg, "resize": resize, "crop": crop, "exposure": exposure, "text": text}


def load_images(name: str, count: int, *, seed: int = 0, folder: str | Path | None = None) -> np.ndarray:
    """``count`` decoded uint8 images of a real set: ``fashion-mnist`` (Debian's files, ``(N, 28, 28)``),
    ``cifar10n`` (the CIFAR-10N training JPEGs in ``folder`` or ``$CSL_CIFAR10N_TRAIN``, ``(N, 32, 32, 3)``)
    or ``cifar10n-photo`` (the same, upsampled to :data:`PHOTO_SIZE` px by bicubic interpolation: a
    photo-sized set), a random choice in file order."""
    rng = np.random.default_rng(seed)
    if name == "fashion-mnist":
        from ..data.builtin import load_fashion_mnist

        train, _ = load_fashion_mnist()
        chosen = np.sort(rng.choice(len(train.images), min(count, len(train.images)), replace=False))
        return np.asarray(train.images[chosen])
    if name in ("cifar10n", "cifar10n-photo"):
        from PIL import Image

        files = sorted(cifar10n_folder(folder).glob("*.jpg"))
        chosen = np.sort(rng.choice(len(files), min(count, len(files)), replace=False))
        size = PHOTO_SIZE if name == "cifar10n-photo" else None
        return np.stack([np.asarray(_opened(Image.open(files[i]).convert("RGB"), size)) for i in chosen])
    raise InputError(f"unknown image set {name!r}; choose fashion-mnist, cifar10n or cifar10n-photo")


# The photo-sized set: CIFAR-10N's 32 px pictures upsampled to this size before copies are planted.
PHOTO_SIZE = 160


def _opened(picture, size: int | None):
    from PIL import Image

    return picture if size is None else picture.resize((size, size), Image.BICUBIC)


def plant(images: np.ndarray, per_kind: int, *, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """``images`` with ``per_kind`` planted copies of each kind appended (each of a different original).

    Returns ``(all images, pairs)``; ``pairs`` has one row per planted copy: ``original``, ``copy`` (indices
    into the returned images) and ``kind``.
    """
    rng = np.random.default_rng(seed)
    originals = rng.choice(len(images), per_kind * len(KINDS), replace=False)
    copies, rows = [], []
    for i, original in enumerate(originals):
        kind = list(KINDS)[i // per_kind]
        copies.append(KINDS[kind](images[original], rng))
        rows.append((int(original), len(images) + i, kind))
    out = np.concatenate([images, np.stack(copies)]) if copies else images
    return out, pd.DataFrame(rows, columns=["original", "copy", "kind"])


def false_grouping(groups: np.ndarray, pairs: pd.DataFrame, known: np.ndarray | None = None) -> np.ndarray:
    """Per sample: grouped with a sample that is not its planted partner (``(N,)`` bool).

    ``known``: groups of the set's own near-duplicates, looked at and taken as real (``-1`` alone); a
    sample grouped only with its planted partner and such duplicates (and theirs) is not counted.
    """
    n = len(groups)
    source = [pairs["original"].to_numpy(), np.arange(n)]
    target = [pairs["copy"].to_numpy(), np.arange(n)]
    if known is not None:
        grouped = np.flatnonzero(known >= 0)
        first = np.full(max(int(known.max()) + 1, 1), -1)
        np.maximum.at(first, known[grouped], grouped)
        source.append(grouped)
        target.append(first[known[grouped]])
    reference = pair_components(np.concatenate(source), np.concatenate(target), n)
    grouped = groups >= 0
    # a group is false where its members come from more than one reference component
    key = np.where(grouped, groups, -1 - np.arange(n))
    _, group_index = np.unique(key, return_inverse=True)
    lowest = np.full(group_index.max() + 1, n)
    highest = np.full(group_index.max() + 1, -1)
    np.minimum.at(lowest, group_index, reference)
    np.maximum.at(highest, group_index, reference)
    return grouped & (lowest[group_index] != highest[group_index])


def pair_components(source: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """The connected component of each of ``n`` images, given the pairs ``(source[i], target[i])``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(source), dtype=np.int8), (source, target)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def links(images: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Each sample's neighbours and how far each link is, lower = closer, and for ``crops`` the crop tier's
    pairs and their distances. ``aligned`` (the thumbnails' 20 nearest re-ranked by the aligned fine
    fingerprints), ``aligned-loose`` (the same with the absolute limit :data:`LOOSE_MAX_DISTANCE`),
    ``crops`` (the product's: ``aligned`` plus the crop tier, :mod:`csl_core.analysis.crops`) and
    ``thumbnail`` (the thumbnails' 10 nearest alone) give the ratio of
    :func:`~csl_core.analysis.hashing.ratio_links`; a hash (``phash``, ``dhash``, ``pdq``) its Hamming
    distance in bits."""
    if method == "crops":
        indices, similarities, pairs, sims = duplicate_search(thumbnails(images), fine_prints(images),
                                                              crop_prints(images))
        distance = np.where(crop_ratios(pairs, sims) <= CROP_RATIO, 1.0 - sims, np.inf)  # the tier's ratio test
        return indices, ratio_links(indices, similarities, max_distance=ALIGNED_MAX_DISTANCE), (pairs, distance)
    if method in ("aligned", "aligned-loose"):
        indices, similarities = aligned_neighbours(thumbnails(images), fine_prints(images))
        limit = ALIGNED_MAX_DISTANCE if method == "aligned" else LOOSE_MAX_DISTANCE
        return indices, ratio_links(indices, similarities, max_distance=limit), None
    if method == "thumbnail":
        indices, similarities = nearest_neighbours(thumbnails(images), k=FINGERPRINT_NEIGHBOURS)
        return indices, ratio_links(indices, similarities), None
    indices, distances = hash_neighbours(perceptual_hashes(images, method=method))
    return indices, distances.astype(np.float64), None


# ``aligned-loose``: the aligned search with a looser absolute limit, measured to show what finding crops
# costs (docs/bench/duplicates.md); the product uses ALIGNED_MAX_DISTANCE.
LOOSE_MAX_DISTANCE = 0.024

# The set's own near-duplicates, taken as real: the groups at this ratio, every one of them looked at
# (docs/bench/duplicates.md: the same picture, re-encoded or recoloured, in Fashion-MNIST and CIFAR-10).
REFERENCE_RATIO = 0.1


def evaluate(images: np.ndarray, pairs: pd.DataFrame, *, method: str, thresholds: list[float],
             known: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per threshold: recall per kind, pairs found, samples falsely grouped (count and share; with
    ``known``, the set's own near-duplicates, also the count after leaving those out), the largest group.
    Exact copies (same pixels) are always grouped, as in the product."""
    indices, distance, crops = links(images, method)
    exact_of = exact_duplicate_of(content_hashes(images))
    rows, groups_at = [], {}
    base_false = None
    if crops is not None:  # the samples falsely grouped without the crop tier: what the tier adds is apart
        base = group_labels(indices, -distance, threshold=-DEFAULT_RATIO, exact_of=exact_of)
        base_false = false_grouping(base, pairs, known)
    for threshold in thresholds:
        if crops is None:
            groups = group_labels(indices, -distance, threshold=-threshold, exact_of=exact_of)
        else:  # the ratio at its default, the threshold the crop tier's limit
            pairs_within = crops[0][crops[1] <= threshold]
            groups = group_labels(indices, -distance, threshold=-DEFAULT_RATIO, exact_of=exact_of,
                                  extra_pairs=pairs_within)
        rows.append(score_groups(groups, pairs, method=method, threshold=threshold, known=known,
                                 base_false=base_false))
        groups_at[threshold] = groups
    return pd.DataFrame(rows), groups_at


def score_groups(groups: np.ndarray, pairs: pd.DataFrame, *, method: str, threshold, known: np.ndarray | None = None,
                 base_false: np.ndarray | None = None) -> dict:
    """One row of the table for one grouping: recall per kind, pairs found, samples falsely grouped (count
    and share; with ``known``, also after leaving the set's own near-duplicates out; with ``base_false``,
    the samples falsely grouped without the crop tier, what the crop tier adds), the largest group."""
    together = (groups[pairs["original"]] >= 0) & (groups[pairs["original"]] == groups[pairs["copy"]])
    false = false_grouping(groups, pairs)
    row = {"method": method, "threshold": threshold}
    for kind in KINDS:
        row[f"recall_{kind}"] = float(together[pairs["kind"].to_numpy() == kind].mean())
    row.update({"pairs_found": int(together.sum()), "pairs": len(pairs), "false_grouped": int(false.sum()),
                "false_share": float(false.mean())})
    if known is not None:
        real = false_grouping(groups, pairs, known)
        row.update({"false_grouped_not_known": int(real.sum()), "false_share_not_known": float(real.mean())})
        if base_false is not None:
            added = real & ~base_false
            row.update({"false_grouped_crop_tier": int(added.sum()), "false_share_crop_tier": float(added.mean())})
    row["largest_group"] = int(np.bincount(groups[groups >= 0]).max()) if (groups >= 0).any() else 0
    return row


def known_duplicates(images: np.ndarray) -> np.ndarray:
    """The groups of ``images`` at :data:`REFERENCE_RATIO` by the thumbnail: the set's own near-duplicates
    (planted copies included), to be looked at before they are taken as real."""
    indices, distance, _ = links(images, "thumbnail")
    return group_labels(indices, -distance, threshold=-REFERENCE_RATIO,
                        exact_of=exact_duplicate_of(content_hashes(images)))


def pick_threshold(table: pd.DataFrame, *, max_false_share: float = 0.005,
                   column: str = "false_share_not_known") -> float:
    """The largest threshold whose false grouping (``column``) stays within ``max_false_share`` on every
    data set in ``table`` (one row per data set and threshold); the recall rises with it."""
    worst = table.groupby("threshold")[column].max()
    allowed = worst[worst <= max_false_share]
    if allowed.empty:
        raise InputError(f"no threshold keeps false grouping within {max_false_share:.1%}")
    return float(allowed.index.max())
