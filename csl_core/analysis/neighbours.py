"""One nearest-neighbour search for every use: the kNN disagreement of the fused score, the focused
review's neighbours and the duplicate search over perceptual hashes all call :func:`nearest_neighbours`.

Two backends, chosen by size (``backend="auto"``):

- ``exact``: every sample against every other, one block of rows at a time (memory ``block_rows x N``
  floats, never ``N x N``), in torch; on a CUDA device when one is present, where even 1.28M x 512
  takes seconds. ``O(N^2 D)``: minutes on a CPU at 50k samples, hours at a million.
- ``faiss``: an inverted-file search. faiss's k-means (spherical, on a sample) splits the vectors into
  about ``sqrt(N)`` cells; every sample is searched exactly among the members of its ``probes`` nearest
  cells, one cell at a time as one matrix product (all queries of a cell against its members), so the
  work is ``N x probes x N / cells x D`` and runs at matrix-product speed. Approximate: a neighbour in
  none of the probed cells is missed (recall@30 against the exact search: docs/bench/duplicates.md).
  A sample whose probed cells hold fewer than ``k`` others is searched exactly.

Similarities are cosines of the L2-normalised rows. No files and no clocks in here.
"""
from __future__ import annotations

import numpy as np

from ..progress import progress_bar

# Above this many samples on a CPU the faiss backend is used (the exact search costs N^2 D: 15 s at
# 20k x 512 on two cores, an hour at 300k).
EXACT_MAX_SAMPLES = 20_000
DEFAULT_PROBES = 8
DEFAULT_BLOCK_BYTES = 64 * 2**20
BACKENDS = ("auto", "exact", "faiss")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; an all-zero row stays zero (similar to nothing)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (samples, features) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def choose_backend(num_samples: int, *, cuda: bool | None = None) -> str:
    """``exact`` on a CUDA device or up to :data:`EXACT_MAX_SAMPLES` samples, else ``faiss``."""
    if cuda is None:
        cuda = cuda_available()
    return "exact" if cuda or num_samples <= EXACT_MAX_SAMPLES else "faiss"


def nearest_neighbours(vectors: np.ndarray, *, k: int, backend: str = "auto", probes: int = DEFAULT_PROBES,
                       block_bytes: int = DEFAULT_BLOCK_BYTES, seed: int = 0, progress: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's ``k`` nearest neighbours by cosine similarity, itself excluded.

    Parameters
    ----------
    vectors:
        ``(N, D)`` features; normalised here.
    k:
        Neighbours per sample (capped at ``N - 1``).
    backend:
        ``auto`` (:func:`choose_backend`), ``exact`` or ``faiss``.
    probes:
        Cells searched per sample by the faiss backend; more finds more of the exact neighbours.
    block_bytes:
        Memory for one block of similarities.

    Returns
    -------
    ``(indices, similarities)``: ``(N, k)`` int64 and float32, most similar first.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if probes < 1:
        raise ValueError(f"probes must be at least 1, got {probes}")
    n = len(vectors)
    k = min(k, max(n - 1, 0))
    if k == 0:
        normalise(vectors[:0])  # the shape check
        return np.empty((n, 0), dtype=np.int64), np.empty((n, 0), dtype=np.float32)
    if backend == "auto":
        backend = choose_backend(n)
    if backend == "exact":
        indices, similarities = exact_search(normalise(vectors), np.arange(n), k, block_bytes, progress)
    else:  # the normalised copy is handed over, so that it is freed once sorted by cell
        indices, similarities = _partitioned(normalise(vectors), k, probes, block_bytes, seed, progress)
    np.clip(similarities, -1.0, 1.0, out=similarities)
    return indices, similarities


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def exact_search(unit: np.ndarray, rows: np.ndarray, k: int, block_bytes: int, progress: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``k`` nearest neighbours of ``unit[rows]`` among all of ``unit``."""
    import torch  # imported here so that the dashboard need not load it

    n = len(unit)
    device = "cuda" if cuda_available() else "cpu"
    everything = torch.from_numpy(unit).to(device)
    indices = np.empty((len(rows), k), dtype=np.int64)
    similarities = np.empty((len(rows), k), dtype=np.float32)
    block_rows = max(1, min(len(rows), block_bytes // (4 * n)))
    starts = range(0, len(rows), block_rows)
    for start in progress_bar(starts, desc="nearest neighbours", disable=None if progress else True):
        stop = min(start + block_rows, len(rows))
        queries = torch.from_numpy(rows[start:stop]).to(device)
        block = everything[queries] @ everything.T  # (B, N)
        block[torch.arange(stop - start, device=device), queries] = -torch.inf  # not its own neighbour
        values, found = torch.topk(block, k, dim=1)  # (B, k), sorted
        similarities[start:stop] = values.cpu().numpy()
        indices[start:stop] = found.cpu().numpy()
    return indices, similarities


def _partitioned(unit: np.ndarray, k: int, probes: int, block_bytes: int, seed: int, progress: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    n = len(unit)
    cells = max(1, int(round(np.sqrt(n))))
    probes = min(probes, cells)
    centroids = torch.from_numpy(_cell_centroids(unit, cells, seed))
    probed = _top_cells(torch.from_numpy(unit), centroids, probes, block_bytes)  # (N, probes), nearest first
    # Members: each sample in its nearest cell, cells side by side (a member slice, not a gather).
    order = np.argsort(probed[:, 0], kind="stable")
    bounds = np.searchsorted(probed[order, 0], np.arange(cells + 1))
    x = unit[order]
    del unit  # (the one reference: the sorted copy replaces it)
    sorted_at = np.empty(n, dtype=np.int64)
    sorted_at[order] = np.arange(n)
    # Queries: each sample in each of its probed cells, by sorted position.
    query_cells = probed.ravel()
    by_cell = np.argsort(query_cells, kind="stable")
    query_bounds = np.searchsorted(query_cells[by_cell], np.arange(cells + 1))
    queries_sorted = sorted_at[by_cell // probes]
    del probed, query_cells, by_cell
    xs, x = x, torch.from_numpy(x)
    best = torch.full((n, k), -torch.inf)  # by sorted position
    found = torch.full((n, k), -1, dtype=torch.int64)
    for cell in progress_bar(range(cells), desc="nearest neighbours (faiss cells)", disable=None if progress else True):
        begin, stop = int(bounds[cell]), int(bounds[cell + 1])
        queries = queries_sorted[query_bounds[cell]:query_bounds[cell + 1]]
        if begin == stop or len(queries) == 0:
            continue
        members = x[begin:stop]
        chunk = max(1, block_bytes // (4 * (stop - begin)))
        for start in range(0, len(queries), chunk):
            batch = queries[start:start + chunk]
            rows = torch.from_numpy(batch)
            sims = torch.from_numpy(np.take(xs, batch, axis=0)) @ members.T  # (q, m)
            own = np.flatnonzero((batch >= begin) & (batch < stop))  # queries that are members here
            sims[torch.from_numpy(own), torch.from_numpy(batch[own] - begin)] = -torch.inf
            values, where = torch.topk(sims, min(k, stop - begin), dim=1)
            top_values, top = torch.topk(torch.cat([best[rows], values], dim=1), k, dim=1)
            best[rows] = top_values
            found[rows] = torch.gather(torch.cat([found[rows], where + begin], dim=1), 1, top)
    found_sorted, best_sorted = found.numpy(), best.numpy()
    short = np.flatnonzero((found_sorted < 0).any(axis=1))  # probed cells held fewer than k others
    if len(short):
        found_sorted[short], best_sorted[short] = exact_search(xs, short, k, block_bytes, False)
    indices = np.empty((n, k), dtype=np.int64)
    similarities = np.empty((n, k), dtype=np.float32)
    indices[order] = order[found_sorted]
    similarities[order] = best_sorted
    return indices, similarities


def _cell_centroids(unit: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """``cells`` unit centroids from faiss's spherical k-means on a sample of up to 64 rows a cell."""
    import faiss

    rng = np.random.default_rng(seed)
    n, dim = unit.shape
    sample = np.sort(rng.choice(n, size=min(n, 64 * cells), replace=False))
    kmeans = faiss.Kmeans(dim, cells, niter=10, seed=seed, spherical=True, verbose=False,
                          max_points_per_centroid=64, min_points_per_centroid=1)
    kmeans.train(np.ascontiguousarray(unit[sample]))
    return np.asarray(kmeans.centroids, dtype=np.float32)


def _top_cells(x, centroids, probes: int, block_bytes: int) -> np.ndarray:
    import torch

    out = np.empty((len(x), probes), dtype=np.int64)
    block_rows = max(1, block_bytes // (4 * len(centroids)))
    for start in range(0, len(x), block_rows):
        sims = x[start:start + block_rows] @ centroids.T
        out[start:start + len(sims)] = torch.topk(sims, probes, dim=1).indices.numpy()
    return out
