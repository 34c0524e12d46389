"""Crops found: one picture a crop of the other (2-10% cut from the width and the height, resized back).

A crop zooms by 1.02-1.11 with any offset, which a grid of alignments on a 16 x 16 fingerprint does not
reach closely enough to keep different garments of one cut apart (docs/bench/duplicates.md). Here the
zoom and the offset are found continuously, on a finer fingerprint:

- **Crop fingerprint**: grey, :data:`CROP_SIZE` x :data:`CROP_SIZE` (antialiased bilinear resize), uint8.
- **Candidates that survive a zoom** (:func:`centred_thumbnails`): an 8 x 8 thumbnail of the window
  centred on the picture's centroid of brightness and spanning :data:`CENTRED_SPAN` times its spread, x
  and y apart. A crop moves the frame, not the object, so on objects on a plain background (Fashion-
  MNIST) the crop and its original meet here when the plain thumbnails do not.
- **Continuous alignment** (:func:`crop_similarities`): for each pair, the zoom (x and y apart) and shift
  of one picture that best matches the other (least squares with gain and offset, a few Gauss-Newton
  steps from a zoom of :data:`START_ZOOM`), both ways; the pair's similarity is the best correlation.
  The warp is separable, so each step is a few small matrix products per pair (no per-pixel sampling).

Pure: arrays in, arrays out, torch on the CPU (or a CUDA device where present).
"""
from __future__ import annotations

import numpy as np

CROP_SIZE = 32
# Both pictures are blurred by this much (Gaussian sigma, in crop-fingerprint pixels) before alignment.
CROP_BLUR = 0.5
# Gauss-Newton steps, from a zoom of START_ZOOM (the middle of a 2-10% crop's 1.02-1.11).
STEPS = 6
START_ZOOM = 0.94
# The zoom of the aligned picture stays within these (< 1: zoomed in, the other picture is the crop).
ZOOM_RANGE = (0.8, 1.02)
SHIFT_RANGE = 0.25  # as a share of the picture's half-width
# The centred thumbnail spans +-1.4 standard deviations of brightness around the centroid: its nearest holds a
# Fashion-MNIST crop's original 95.5% of the time at 25,000 images (+-2: 70%; the plain thumbnails' 20: 60%).
CENTRED_SPAN = 1.4
CENTRED_SIZE = 8


def crop_prints(images: np.ndarray, *, size: int = CROP_SIZE, chunk: int = 4096) -> np.ndarray:
    """Each image's crop fingerprint, ``(N, size, size)`` uint8: grey (ITU-R 601 luma), resized by
    antialiased bilinear interpolation (torch), rounded."""
    import torch

    from .hashing import check_images

    images = check_images(images)
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        grey = _grey(torch, images[start:start + chunk])
        resized = torch.nn.functional.interpolate(grey[:, None], size=(size, size), mode="bilinear",
                                                  antialias=True, align_corners=False)[:, 0]
        out[start:start + len(grey)] = resized.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def centred_thumbnails(prints: np.ndarray, *, size: int = CENTRED_SIZE, span: float = CENTRED_SPAN,
                       chunk: int = 16384) -> np.ndarray:
    """Each picture's thumbnail of the window around its centroid of brightness, ``(N, size * size)``
    float32, mean removed: taken from its crop fingerprint (``prints``, ``(N, S, S)`` uint8); the window
    spans ``span`` standard deviations of brightness each way, x and y apart, so a zoom or a shift of the
    frame around the same object leaves it nearly as it was. A flat picture's is zero."""
    import torch
    import torch.nn.functional as F

    prints = np.asarray(prints)
    n, s = len(prints), prints.shape[-1]
    out = np.zeros((n, size * size), dtype=np.float32)
    coords = (torch.arange(s, dtype=torch.float32) * 2 + 1) / s - 1  # pixel centres in [-1, 1]
    for start in range(0, n, chunk):
        x = torch.from_numpy(np.asarray(prints[start:start + chunk])).float()
        weight = x - x.amin(dim=(1, 2), keepdim=True)
        total = weight.sum(dim=(1, 2)).clamp_min(1e-6)
        wx, wy = weight.sum(dim=1) / total[:, None], weight.sum(dim=2) / total[:, None]  # marginals
        cx, cy = wx @ coords, wy @ coords
        sx = ((wx * (coords - cx[:, None]) ** 2).sum(1)).sqrt().clamp(0.05, 1.0)
        sy = ((wy * (coords - cy[:, None]) ** 2).sum(1)).sqrt().clamp(0.05, 1.0)
        theta = torch.zeros(len(x), 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = span * sx, cx
        theta[:, 1, 1], theta[:, 1, 2] = span * sy, cy
        grid = F.affine_grid(theta, [len(x), 1, 4 * size, 4 * size], align_corners=False)
        window = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
        thumb = F.avg_pool2d(window, 4).flatten(1)
        thumb = thumb - thumb.mean(dim=1, keepdim=True)
        thumb[thumb.norm(dim=1) < 1.0] = 0.0
        out[start:start + len(x)] = thumb.numpy()
    return out


def crop_similarities(prints: np.ndarray, first: np.ndarray, second: np.ndarray, *, steps: int = STEPS,
                      chunk: int = 1024, device: str | None = None) -> np.ndarray:
    """The best correlation of each pair ``(first[i], second[i])`` of crop fingerprints over a continuous
    zoom (x and y apart, within :data:`ZOOM_RANGE`) and shift of either picture: ``(P,)`` float32. Mean
    removed and normalised, so brightness and contrast do not count; a flat picture is similar to
    nothing (0)."""
    from .neighbours import cuda_available

    prints = np.asarray(prints)
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"pairs are two 1-D index arrays of one length, got {first.shape} and {second.shape}")
    if prints.ndim != 3 or prints.shape[1] != prints.shape[2]:
        raise ValueError(f"crop fingerprints are (N, S, S), got {prints.shape}")
    device = device or ("cuda" if cuda_available() else "cpu")
    out = np.zeros(len(first), dtype=np.float32)
    for start in range(0, len(first), chunk):
        a, b = first[start:start + chunk], second[start:start + chunk]
        one = _align(prints[a], prints[b], steps, device)
        other = _align(prints[b], prints[a], steps, device)
        out[start:start + len(a)] = np.maximum(one, other)
    return out


def _grey(torch, block):
    block = torch.from_numpy(np.array(block)).float()
    if block.ndim == 4:
        block = block[..., 0] if block.shape[-1] == 1 else block[..., :3] @ torch.tensor([0.299, 0.587, 0.114])
    return block


def _interpolation(positions, size: int):
    """``(P, S, S)`` bilinear interpolation matrices: row ``j`` samples the picture at ``positions[:, j]``
    (pixel coordinates, clamped to the picture: its edge repeated)."""
    import torch

    positions = positions.clamp(0, size - 1)
    pixels = torch.arange(size, dtype=positions.dtype, device=positions.device)
    return (1 - (positions[..., None] - pixels).abs()).clamp_min(0)


def _unit(x):
    x = x - x.mean(dim=(1, 2), keepdim=True)
    norms = x.flatten(1).norm(dim=1)
    return x / norms.clamp_min(1e-6).view(-1, 1, 1), norms


def _blur_matrix(size: int, sigma: float, device: str):
    """``(S, S)``: a Gaussian blur of one axis as a matrix (edges repeated), so ``G @ X @ G.T`` blurs X."""
    import torch

    radius = max(1, int(np.ceil(2 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    rows = torch.arange(size)[:, None] + taps.long()[None, :]
    matrix = torch.zeros(size, size)
    matrix.scatter_add_(1, rows.clamp(0, size - 1), kernel.expand(size, -1).contiguous())
    return matrix.to(device)


def _align(moving: np.ndarray, fixed: np.ndarray, steps: int, device: str) -> np.ndarray:
    """Warp each ``moving`` picture (zoom x / y, shift x / y) to best match ``fixed`` (gain and offset
    free) by Gauss-Newton; the correlation at the end, ``(P,)``. The blur and the warp are matrices on
    either side of the picture (``Ry G A G' Rx'``), so each step is a few small matrix products."""
    import torch

    from .hashing import FINE_FLAT

    size = moving.shape[-1]
    blur = _blur_matrix(size, CROP_BLUR, device)
    a = blur @ torch.from_numpy(moving).float().to(device) @ blur.T
    b = blur @ torch.from_numpy(fixed).float().to(device) @ blur.T
    count = len(a)
    centre = (size - 1) / 2
    offsets = torch.arange(size, dtype=torch.float32, device=device) - centre  # pixel j - centre
    zoom = torch.full((count, 2), START_ZOOM, device=device)  # x, y
    shift = torch.zeros((count, 2), device=device)  # pixels
    target = b.reshape(count, -1)
    target_c = target - target.mean(1, keepdim=True)
    limit = SHIFT_RANGE * size / 2
    u = offsets.expand(size, size).reshape(-1)  # x - centre of each pixel, row-major
    v = offsets[:, None].expand(size, size).reshape(-1)
    ridge = 1e-3 * torch.eye(5, device=device)
    jac = torch.empty((count, 5, size * size), device=device)  # (P, 5, D): one column of the Jacobian a row
    for step in range(steps + 1):
        rx = _interpolation(centre + zoom[:, :1] * offsets + shift[:, :1], size)  # (P, S_out, S_in)
        ry = _interpolation(centre + zoom[:, 1:] * offsets + shift[:, 1:], size)
        w = ry @ a @ rx.transpose(-1, -2)  # (P, S, S)
        if step == steps:
            break
        # the picture's slope at the sampled points: the warped picture's (central differences), over the zoom
        wx = torch.empty_like(w)
        wx[:, :, 1:-1] = (w[:, :, 2:] - w[:, :, :-2]) / 2
        wx[:, :, 0], wx[:, :, -1] = wx[:, :, 1], wx[:, :, -2]
        wy = torch.empty_like(w)
        wy[:, 1:-1] = (w[:, 2:] - w[:, :-2]) / 2
        wy[:, 0], wy[:, -1] = wy[:, 1], wy[:, -2]
        wx = wx.reshape(count, -1) / zoom[:, :1]
        wy = wy.reshape(count, -1) / zoom[:, 1:]
        flat = w.reshape(count, -1)
        flat_c = flat - flat.mean(1, keepdim=True)
        gain = (flat_c * target_c).sum(1) / (flat_c * flat_c).sum(1).clamp_min(1e-6)
        residual = target_c - gain[:, None] * flat_c
        # d warped / d (zoom x, zoom y, shift x, shift y), times the gain; the gain and an offset fitted jointly
        torch.mul(wx, u, out=jac[:, 0])
        torch.mul(wy, v, out=jac[:, 1])
        jac[:, 2], jac[:, 3] = wx, wy
        jac[:, :4] *= gain[:, None, None]
        jac[:, :4] -= jac[:, :4].mean(2, keepdim=True)
        jac[:, 4] = flat_c
        hessian = jac @ jac.transpose(1, 2) + ridge
        delta = torch.linalg.solve(hessian, jac @ residual[..., None])[..., 0]
        zoom = (zoom + delta[:, :2]).clamp(*ZOOM_RANGE)
        shift = (shift + delta[:, 2:4]).clamp(-limit, limit)
    unit_w, _ = _unit(w)
    unit_b, norms = _unit(b)
    _, moving_norms = _unit(a)
    sims = (unit_w * unit_b).flatten(1).sum(1)
    sims[(norms < FINE_FLAT * size) | (moving_norms < FINE_FLAT * size)] = 0.0
    return sims.cpu().numpy()


# ---------------------------------------------------------------- the crop tier of the duplicate search

# The centred thumbnails' nearest, added to the plain thumbnails' candidates (a crop of Fashion-MNIST is
# among its original's 20 nearest plain thumbnails 38% of the time at 25,000 images).
CROP_CANDIDATES = 10
# Each picture's best candidate by the 16 x 16 aligned similarity is aligned continuously, if within CROP_GATE
# (1 - aligned correlation): a Fashion-MNIST crop is its original's best candidate (one way or the other) 86%
# of the time at 5,000 images, 87% among the best two (which cost 1.5 times the pairs).
CROP_PAIRS = 1
CROP_GATE = 0.05
# Two crop fingerprints this close once aligned (1 - correlation) are a "possible crop" pair; picked by the
# benchmark (docs/bench/duplicates.md, its `crops` rows at 25,000 images): the largest limit whose false
# grouping, every tier together, stays within 0.5% of the samples on Fashion-MNIST and CIFAR-10N (planted
# crops at a median of 0.0009 / 0.0001; the nearest different garment of 1% of the images within 0.006).
CROP_MAX_DISTANCE = 0.003
# ...and at most this share of the next closest crop pair of either picture (crop_ratios): on 25,000
# Fashion-MNIST images at limit 0.004 the crop tier then groups 0.12% of the samples falsely instead of 0.82%,
# for 0.895 of the crops found instead of 0.91.
CROP_RATIO = 0.2


def crop_candidates(crop: np.ndarray, *, k: int = CROP_CANDIDATES, progress: bool = False) -> np.ndarray:
    """Each picture's ``k`` nearest centred thumbnails (``(N, k)`` int64), through the one neighbour search."""
    from .neighbours import nearest_neighbours

    indices, _ = nearest_neighbours(centred_thumbnails(crop), k=k, progress=progress)
    return indices


def gated_pairs(indices: np.ndarray, similarities: np.ndarray, *, pairs: int = CROP_PAIRS, gate: float = CROP_GATE,
                also: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs worth aligning continuously: each row's ``pairs`` most similar candidates, and its candidate
    in column ``also`` (the nearest centred thumbnail), those within ``gate`` (1 - similarity), each
    unordered pair once: ``(first, second)`` int64 with ``first < second``."""
    indices, similarities = np.asarray(indices), np.asarray(similarities)
    n = len(indices)
    if n == 0 or indices.shape[1] == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :pairs]
    if also is not None and also < indices.shape[1]:
        order = np.concatenate([order, np.full((n, 1), also)], axis=1)
    best = np.take_along_axis(indices, order, 1)
    close = (1.0 - np.take_along_axis(similarities, order, 1)) <= gate
    rows = np.repeat(np.arange(n), best.shape[1])[close.ravel()]
    others = best.ravel()[close.ravel()]
    keep = rows != others
    low, high = np.minimum(rows, others)[keep], np.maximum(rows, others)[keep]
    keys = np.unique(low.astype(np.int64) * n + high)
    return keys // n, keys % n


def crop_ratios(pairs: np.ndarray, similarities: np.ndarray) -> np.ndarray:
    """Each crop pair's distance (1 - similarity) over the larger of its two pictures' second-smallest crop
    distance (of those that have a second pair; where neither has, the ratio is 0): a crop is far closer to
    its original than to anything else aligned with either, a look-alike in a crowd is not."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    distance = 1.0 - np.asarray(similarities, dtype=np.float64)
    if len(pairs) == 0:
        return distance
    n = int(pairs.max()) + 1
    ends, values = pairs.T.ravel(), np.concatenate([distance, distance])
    order = np.lexsort((values, ends))
    ends, values = ends[order], values[order]
    counts = np.bincount(ends, minlength=n)
    starts = np.searchsorted(ends, np.arange(n))
    second = np.full(n, np.nan)
    two = counts > 1
    second[two] = values[starts[two] + 1]
    scale = np.fmax(second[pairs[:, 0]], second[pairs[:, 1]])  # NaN (no second pair) left out
    return np.divide(distance, scale, out=np.zeros_like(distance), where=np.isfinite(scale) & (scale > 0))


def crop_search(crop: np.ndarray, indices: np.ndarray, similarities: np.ndarray, *, also: int | None = None,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The crop tier over verified candidates (``indices`` / ``similarities``: 16 x 16 aligned, plain and
    centred candidates together): ``(pairs (M, 2) int64, similarities (M,) float32)``, each gated pair's
    similarity once aligned continuously (:func:`crop_similarities`)."""
    first, second = gated_pairs(indices, similarities, also=also)
    sims = crop_similarities(crop, first, second)
    return np.stack([first, second], 1), sims


def duplicate_search(prints: np.ndarray, fine: np.ndarray, crop: np.ndarray | None, *, keep: int | None = None,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole near-duplicate search: each picture's nearest plain thumbnails (``prints``), verified by
    the 16 x 16 aligned similarity (``fine``), the best ``keep`` kept for the ratio test (as
    :func:`~csl_core.analysis.hashing.aligned_neighbours`); and with ``crop`` fingerprints, the crop tier:
    the centred thumbnails' nearest verified too, the best gated pairs aligned continuously. Returns
    ``(indices (N, keep), similarities (N, keep), crop pairs (M, 2), crop similarities (M,))``."""
    from .hashing import CANDIDATES, FINGERPRINT_NEIGHBOURS, aligned_similarities
    from .neighbours import nearest_neighbours

    keep = keep or FINGERPRINT_NEIGHBOURS
    if len(prints) != len(fine) or (crop is not None and len(crop) != len(fine)):
        raise ValueError(f"{len(prints)} thumbnails, {len(fine)} fine fingerprints"
                         + ("" if crop is None else f" and {len(crop)} crop fingerprints"))
    found, _ = nearest_neighbours(prints, k=max(keep, CANDIDATES), progress=progress)
    plain = found.shape[1]
    if crop is not None and len(crop) > 1:
        found = np.concatenate([found, crop_candidates(crop, progress=progress)], axis=1)
    sims = aligned_similarities(fine, found)
    order = np.argsort(-sims[:, :plain], axis=1, kind="stable")[:, :keep]
    indices, similarities = np.take_along_axis(found, order, 1), np.take_along_axis(sims, order, 1)
    if crop is None or len(crop) < 2:
        return indices, similarities, np.empty((0, 2), np.int64), np.empty(0, np.float32)
    pairs, crop_sims = crop_search(crop, found, sims, also=plain, progress=progress)  # and the nearest centred
    return indices, similarities, pairs, crop_sims
