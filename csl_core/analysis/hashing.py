"""Fingerprints of what a picture looks like, to find near-duplicates: the same picture re-encoded,
resized, lightly cropped or re-exposed, not two pictures of one class (a trained classifier's features
cannot tell those apart: they collapse each class towards one point).

The product's fingerprint is a **thumbnail**: the image in grey, shrunk to 8 x 8 by area averaging
(torch's adaptive average pooling), minus its mean (so brightness does not count), compared by
cosine similarity (so contrast does not count). Near-duplicates are found by a **ratio test** rather
than a fixed similarity: two samples are linked when their distance (1 - cosine) is at most
:data:`DEFAULT_RATIO` times the distance to the :data:`FINGERPRINT_NEIGHBOURS`-th nearest thumbnail
(the larger of the two samples'), and at most :data:`MAX_DISTANCE` apart. A copy is far closer than
anything else; in a crowd of look-alikes (Fashion-MNIST's trousers) nothing is, however high the
similarities run. Perceptual hashes from ``imagehash`` (pHash, dHash, 64 bits) and ``pdqhash`` (PDQ,
256 bits, where installed) were measured beside it and lose on precision (docs/bench/duplicates.md,
whose table picks the fingerprint and :data:`DEFAULT_RATIO`); they stay here for the benchmark.

Neighbours come from the one neighbour search (:mod:`csl_core.analysis.neighbours`); hashes are
searched as +-1 vectors, whose cosine is ``1 - 2 distance / bits``.
"""
from __future__ import annotations

import numpy as np

from ..progress import progress_bar

METHODS = ("phash", "dhash", "pdq")
HASH_NEIGHBOURS = 10
THUMBNAIL_SIZE = 8
FINGERPRINT_NEIGHBOURS = 10
# Picked by the benchmark table (docs/bench/duplicates.md): the largest ratio whose false grouping stays
# within 0.5% of the samples on both Fashion-MNIST and CIFAR-10N.
DEFAULT_RATIO = 0.2
# Two thumbnails this close are linked whatever their neighbours (a crowd of copies of one picture).
ALWAYS_LINKED = 1e-4
# ...and two this far apart (1 - cosine) never are, however sparse the set: in a folder of 300
# Fashion-MNIST images the 10th neighbour is far, and different trousers sit at 0.004-0.03 (re-encoded
# copies within 0.001, 90% of x0.5-x2 resized ones within 0.005).
MAX_DISTANCE = 0.003
# A thumbnail whose values (grey levels, mean removed) have less than this norm is flat: zero.
FLAT = 1.0


def thumbnails(images: np.ndarray, *, size: int = THUMBNAIL_SIZE, chunk: int = 4096) -> np.ndarray:
    """Each image's thumbnail fingerprint, ``(N, size * size)`` float32: grey (ITU-R 601 luma), shrunk by
    adaptive average pooling (torch), mean removed. ``images`` is uint8 ``(N, H, W)`` or
    ``(N, H, W, C)`` with C in 1, 3 or 4; read ``chunk`` images at a time (a memory map stays one)."""
    import torch
    import torch.nn.functional as F

    images = _check_images(images)
    luma = torch.tensor([0.299, 0.587, 0.114])
    out = np.empty((len(images), size * size), dtype=np.float32)
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.array(images[start:start + chunk])).float()
        if block.ndim == 4:
            block = block[..., 0] if block.shape[-1] == 1 else block[..., :3] @ luma
        out[start:start + len(block)] = F.adaptive_avg_pool2d(block[:, None], size).flatten(1).numpy()
    out -= out.mean(axis=1, keepdims=True)
    # A flat picture has no structure to compare (what is left is rounding): similar to nothing, so
    # only its exact copies group with it.
    out[np.linalg.norm(out, axis=1) < FLAT] = 0.0
    return out


def ratio_links(indices: np.ndarray, similarities: np.ndarray) -> np.ndarray:
    """Each neighbour link's distance over the local scale, ``(N, k)``: ``(1 - cosine)`` divided by the
    larger of the two samples' distance to their last (k-th) neighbour; ``inf`` beyond
    :data:`MAX_DISTANCE`, 0 within :data:`ALWAYS_LINKED`. Small = a copy; a link is a near-duplicate when
    this is at most the ratio (:data:`DEFAULT_RATIO`)."""
    distance = 1.0 - np.asarray(similarities, dtype=np.float64)
    if distance.shape[1] == 0:
        return distance
    scale = distance[:, -1]
    local = np.maximum(scale[:, None], scale[indices])
    ratio = np.divide(distance, local, out=np.full_like(distance, np.inf), where=local > 0)
    ratio = np.where(distance > MAX_DISTANCE, np.inf, ratio)
    return np.where(distance <= ALWAYS_LINKED, 0.0, ratio)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"image fingerprints are taken over decoded uint8 pixels, got {images.dtype}")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, 1|3|4), got {images.shape}")
    return images


def _grey_or_rgb(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image[..., :3] if image.ndim == 3 else image


def perceptual_hashes(images: np.ndarray, *, method: str = "phash", progress: bool = False) -> np.ndarray:
    """The perceptual hash of each decoded image, ``(N, bits / 8)`` uint8 (packed bits).

    ``images`` is uint8 ``(N, H, W)`` or ``(N, H, W, C)`` with C in 1, 3 or 4.
    """
    images = _check_images(images)
    if method not in METHODS:
        raise ValueError(f"unknown perceptual hash {method!r}; choose one of {', '.join(METHODS)}")
    one = _hasher(method)
    bits = 256 if method == "pdq" else 64
    out = np.empty((len(images), bits // 8), dtype=np.uint8)
    rows = progress_bar(range(len(images)), desc=f"{method} hashes", disable=None if progress else True)
    for i in rows:
        out[i] = np.packbits(one(images[i]))
    return out


def _hasher(method: str):
    if method == "pdq":
        import pdqhash

        def pdq(image: np.ndarray) -> np.ndarray:
            rgb = _rgb(image)
            return pdqhash.compute(np.ascontiguousarray(rgb))[0].astype(bool)

        return pdq
    import imagehash
    from PIL import Image

    function = imagehash.phash if method == "phash" else imagehash.dhash

    def pil_hash(image: np.ndarray) -> np.ndarray:
        return function(Image.fromarray(_grey_or_rgb(image))).hash.ravel()

    return pil_hash


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distance between packed hashes, row by row (broadcasting): ``(..., bytes)`` -> ``(...)``."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)


def hash_neighbours(hashes: np.ndarray, *, k: int = HASH_NEIGHBOURS, backend: str = "auto", probes: int | None = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's ``k`` nearest hashes by Hamming distance: ``(indices (N, k) int64, distances (N, k)
    int16)``, nearest first, itself excluded; through the one neighbour search."""
    from .neighbours import DEFAULT_PROBES, nearest_neighbours

    hashes = np.asarray(hashes)
    if hashes.dtype != np.uint8 or hashes.ndim != 2:
        raise ValueError(f"hashes are packed bits, (N, bytes) uint8; got {hashes.dtype} {hashes.shape}")
    bits = hashes.shape[1] * 8
    signs = np.unpackbits(hashes, axis=1).astype(np.float32) * 2 - 1  # +-1: cosine = 1 - 2 d / bits
    indices, cosines = nearest_neighbours(signs, k=k, backend=backend, probes=probes or DEFAULT_PROBES,
                                          progress=progress)
    distances = np.rint((1 - cosines.astype(np.float64)) * bits / 2).astype(np.int16)
    return indices, distances
