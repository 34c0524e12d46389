"""Fingerprints of what a picture looks like, to find near-duplicates: the same picture re-encoded,
resized, lightly cropped or re-exposed, not two pictures of one class (a trained classifier's features
cannot tell those apart: they collapse each class towards one point).

The product finds near-duplicates in two steps:

1. **Candidates** from a **thumbnail**: the image in grey, shrunk to 8 x 8 by area averaging (torch's
   adaptive average pooling), minus its mean (so brightness does not count), compared by cosine
   similarity (so contrast does not count): each picture's :data:`CANDIDATES` nearest thumbnails.
2. **Verification** on a **fine fingerprint** (grey, 16 x 16, uint8): each candidate pair's best
   correlation over a few alignments, "one is the other blurred more" (a x0.5 round trip) and "one is
   a crop of the other, resized back" (:func:`aligned_similarities`); the best
   :data:`FINGERPRINT_NEIGHBOURS` candidates by it are kept.

Near-duplicates are then found by a **ratio test** rather than a fixed similarity: two samples are
linked when their distance (1 - aligned correlation) is at most :data:`DEFAULT_RATIO` times the
distance to the 10th best verified candidate (the larger of the two samples'), and at most
:data:`ALIGNED_MAX_DISTANCE` apart. A copy is far closer than anything else; in a crowd of look-alikes
(Fashion-MNIST's trousers) nothing is, however high the similarities run. A run whose fine
fingerprints cannot be made uses the thumbnails' own 10 nearest with :data:`MAX_DISTANCE`.

Perceptual hashes from ``imagehash`` (pHash, dHash, aHash, 64 bits) and ``pdqhash`` (PDQ,
256 bits, where installed) were measured beside it and lose on precision (docs/bench/duplicates.md,
whose table picks the fingerprint and :data:`DEFAULT_RATIO`); they stay here for the benchmark.

Neighbours come from the one neighbour search (:mod:`csl_core.analysis.neighbours`); hashes are
searched as +-1 vectors, whose cosine is ``1 - 2 distance / bits``.
"""
from __future__ import annotations

import numpy as np

from ..progress import progress_bar

METHODS = ("phash", "dhash", "ahash", "pdq")
HASH_NEIGHBOURS = 10
THUMBNAIL_SIZE = 8
FINGERPRINT_NEIGHBOURS = 10
# Picked by the benchmark table (docs/bench/duplicates.md, its `aligned` rows): the largest ratio whose false
# grouping stays within 0.5% of the samples on both Fashion-MNIST and CIFAR-10N.
# (The thumbnails alone, a run without fine fingerprints, would pick 0.2.)
DEFAULT_RATIO = 0.25
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

    images = check_images(images)
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


# ---------------------------------------------------------------- aligned verification

# Candidates: each picture's CANDIDATES nearest thumbnails; the best FINGERPRINT_NEIGHBOURS of them by
# aligned correlation are kept, so the ratio test compares with the 10th best *aligned* candidate.
CANDIDATES = 20
# The finer fingerprint that verifies a candidate: grey, 16 x 16 by area averaging, uint8 (256 bytes a
# picture: 328 MB at 1.28M), kept in fingerprints.npz beside the thumbnail.
FINE_SIZE = 16
# Both fingerprints are blurred by this much (Gaussian sigma, in fine pixels) before they are compared.
FINE_BLUR = 0.6
# The alignments tried, each on either picture: "one is the other, blurred more" (a x0.5 round trip
# blurs) and "one is a crop of the other, resized back" (scale, then offsets in [-1, 1] coordinates;
# a crop of 2-10% zooms by 1.02-1.11). The best correlation over them, both ways, is the pair's.
EXTRA_BLURS = (0.5, 1.0)
CROPS = ((0.95, (-0.05, 0.0, 0.05)), (0.90, (-0.1, -0.05, 0.0, 0.05, 0.1)))
# Two aligned fingerprints this far apart (1 - correlation) are never linked (the thumbnail's
# MAX_DISTANCE for the aligned search): in folders of 300 Fashion-MNIST images, where the 10th candidate
# is far, the closest different garments sit at 0.005-0.0074; 90% of x0.5-x2 resized copies within 0.0022
# (Fashion-MNIST) / 0.0013 (CIFAR-10N), crops at a median of 0.0085 (docs/bench/duplicates.md).
ALIGNED_MAX_DISTANCE = 0.004
# A fine fingerprint whose grey levels vary less than this (standard deviation) is flat: similar to nothing.
FINE_FLAT = 0.25


def fine_prints(images: np.ndarray, *, size: int = FINE_SIZE, chunk: int = 4096) -> np.ndarray:
    """Each image's fine fingerprint, ``(N, size, size)`` uint8: grey (ITU-R 601 luma), shrunk by adaptive
    average pooling (torch), rounded; what :func:`aligned_similarities` compares."""
    import torch
    import torch.nn.functional as F

    images = check_images(images)
    luma = torch.tensor([0.299, 0.587, 0.114])
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.array(images[start:start + chunk])).float()
        if block.ndim == 4:
            block = block[..., 0] if block.shape[-1] == 1 else block[..., :3] @ luma
        pooled = F.adaptive_avg_pool2d(block[:, None], size)[:, 0]
        out[start:start + len(block)] = pooled.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def gaussian_blur(x, sigma: float):
    """A separable Gaussian blur of ``(B, 1, S, S)``, edges replicated."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


def _operators(size: int, alignments: bool):
    """The comparison as linear maps of a raw fine fingerprint (``size * size`` grey levels): ``(plain
    (D, D), aligned (D, A * D))``, each column block one alignment of the picture, blurred by
    :data:`FINE_BLUR` first and its mean removed after. Built once by applying the blurs and warps
    (torch's ``grid_sample``) to the ``D`` one-pixel pictures; a picture's alignments are then one
    matrix product."""
    import torch
    import torch.nn.functional as F

    d = size * size
    basis = gaussian_blur(torch.eye(d).view(d, 1, size, size), FINE_BLUR)
    variants = [basis]
    if alignments:
        variants += [gaussian_blur(basis, sigma) for sigma in EXTRA_BLURS]
        thetas = [[[scale, 0.0, tx], [0.0, scale, ty]] for scale, shifts in CROPS for tx in shifts for ty in shifts]
        if thetas:
            theta = torch.tensor(thetas, dtype=basis.dtype)
            grid = F.affine_grid(theta, [len(theta), 1, size, size], align_corners=False)
            warped = F.grid_sample(basis.repeat_interleave(len(theta), 0), grid.repeat(d, 1, 1, 1), mode="bilinear",
                                   padding_mode="border", align_corners=False)
            variants.append(warped.view(d, len(theta), size, size))
    blocks = torch.cat([v.reshape(d, -1, d) for v in variants], dim=1)  # (D, A, D): pixel -> alignment
    blocks = blocks - blocks.mean(dim=-1, keepdim=True)  # the mean of each aligned picture removed
    return blocks[:, 0], blocks.reshape(d, -1)


def _unit_rows(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def aligned_similarities(fine: np.ndarray, indices: np.ndarray, *, alignments: bool = True,
                         budget: int = 2**24, device: str | None = None) -> np.ndarray:
    """The best correlation of each candidate pair over the alignments (``(N, k)`` float32, like
    ``indices``): either picture blurred more (:data:`EXTRA_BLURS`) or zoomed in and shifted
    (:data:`CROPS`), against the other as it is, after both are blurred by :data:`FINE_BLUR`; both
    ways. Mean removed and normalised, so brightness and contrast do not count. A flat fingerprint is
    similar to nothing (0). ``alignments=False``: in place only (the plain correlation). ``budget``: floats
    held at once for one block of pictures. ``device``: torch's, by default a CUDA device where one is
    present (as the neighbour search), else the CPU."""
    import torch

    from .neighbours import cuda_available

    fine = np.asarray(fine)
    indices = np.asarray(indices)
    if fine.ndim != 3 or fine.shape[1] != fine.shape[2]:
        raise ValueError(f"fine fingerprints are (N, S, S), got {fine.shape}")
    n, k = indices.shape
    if len(fine) != n:
        raise ValueError(f"{len(fine)} fine fingerprints for {n} rows of candidates")
    if k == 0 or n == 0:
        return np.zeros((n, k), dtype=np.float32)
    # Each row's partners: its own candidates, then up to k samples that have it as a candidate (and are
    # not among its own), so that a pair is seen from both sides; a hub's further in-links are left out.
    rows = np.repeat(np.arange(n), k)
    own = np.sort(rows * n + indices.ravel())
    back_keys = np.sort(indices.ravel() * n + rows)
    at = np.minimum(np.searchsorted(own, back_keys), len(own) - 1)
    back_keys = back_keys[own[at] != back_keys]
    source, target = back_keys // n, back_keys % n
    rank = np.arange(len(source)) - np.searchsorted(source, source)
    inside = rank < k
    partners = np.full((n, 2 * k), -1, dtype=np.int64)
    partners[:, :k] = indices
    partners[source[inside], k + rank[inside]] = target[inside]
    size = fine.shape[1]
    d = size * size
    device = device or ("cuda" if cuda_available() else "cpu")
    plain_map, aligned_map = (m.to(device) for m in _operators(size, alignments))
    count = aligned_map.shape[1] // d
    raw = fine.reshape(n, d)
    plain = torch.empty((n, d), dtype=torch.float32, device=device)
    step = max(1, budget // d)
    for start in range(0, n, step):
        block = torch.from_numpy(raw[start:start + step].astype(np.float32)).to(device)
        plain[start:start + step] = block @ plain_map
    norms = plain.norm(dim=1)
    flat = norms < FINE_FLAT * size  # the norm of the mean-removed picture: the grey levels' spread times size
    plain = _unit_rows(plain)
    plain[flat] = 0.0
    best = np.zeros((n, 2 * k), dtype=np.float32)
    step = max(1, budget // (count * d))
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = torch.from_numpy(raw[start:stop].astype(np.float32)).to(device)
        aligned = _unit_rows((block @ aligned_map).view(stop - start, count, d))  # (B, A, D)
        aligned[flat[start:stop]] = 0.0
        found = torch.from_numpy(partners[start:stop]).to(device)
        others = plain[found.clamp_min(0)]  # (B, 2k, D)
        sims = torch.bmm(aligned, others.transpose(1, 2)).amax(dim=1)  # (B, 2k)
        sims[found < 0] = 0.0
        best[start:stop] = sims.cpu().numpy()
    # A pair's similarity: the larger of its two sides (each side aligns its own picture).
    valid = partners >= 0
    keys = (np.arange(n)[:, None] * n + partners)[valid]
    order = np.argsort(keys)
    keys, values = keys[order], best[valid][order]
    mirror = indices.ravel() * n + rows
    at = np.minimum(np.searchsorted(keys, mirror), len(keys) - 1)
    other_side = np.where(keys[at] == mirror, values[at], -np.inf).reshape(n, k)
    return np.maximum(best[:, :k], other_side).astype(np.float32)


def verified_neighbours(fine: np.ndarray, indices: np.ndarray, *, keep: int = FINGERPRINT_NEIGHBOURS
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Candidates re-ranked by :func:`aligned_similarities`: the ``keep`` best of each row, ``(indices
    (N, keep) int64, similarities (N, keep) float32)``, most similar first."""
    sims = aligned_similarities(fine, indices)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(np.asarray(indices), order, 1), np.take_along_axis(sims, order, 1)


def aligned_neighbours(prints: np.ndarray, fine: np.ndarray, *, keep: int = FINGERPRINT_NEIGHBOURS,
                       candidates: int = CANDIDATES, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The near-duplicate search: each picture's ``candidates`` nearest thumbnails (``prints``, the one
    neighbour search), re-ranked by the aligned similarity of the fine fingerprints, the ``keep`` best
    kept: ``(indices (N, keep) int64, similarities (N, keep) float32)``. Linked by :func:`ratio_links`
    with ``max_distance=ALIGNED_MAX_DISTANCE``."""
    from .neighbours import nearest_neighbours

    if len(prints) != len(fine):
        raise ValueError(f"{len(prints)} thumbnails but {len(fine)} fine fingerprints")
    found, _ = nearest_neighbours(prints, k=max(keep, candidates), progress=progress)
    return verified_neighbours(fine, found, keep=keep)


def ratio_links(indices: np.ndarray, similarities: np.ndarray, *, max_distance: float = MAX_DISTANCE
                ) -> np.ndarray:
    """Each neighbour link's distance over the local scale, ``(N, k)``: ``(1 - similarity)`` divided by the
    larger of the two samples' distance to their last (k-th) neighbour; ``inf`` beyond ``max_distance``
    (:data:`MAX_DISTANCE` for thumbnails, :data:`ALIGNED_MAX_DISTANCE` for aligned similarities), 0 within
    :data:`ALWAYS_LINKED`. Small = a copy; a link is a near-duplicate when this is at most the ratio
    (:data:`DEFAULT_RATIO`)."""
    distance = 1.0 - np.asarray(similarities, dtype=np.float64)
    if distance.shape[1] == 0:
        return distance
    scale = distance[:, -1]
    local = np.maximum(scale[:, None], scale[indices])
    ratio = np.divide(distance, local, out=np.full_like(distance, np.inf), where=local > 0)
    ratio = np.where(distance > max_distance, np.inf, ratio)
    return np.where(distance <= ALWAYS_LINKED, 0.0, ratio)


def check_images(images: np.ndarray) -> np.ndarray:
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
    images = check_images(images)
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

    function = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash}[method]

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
