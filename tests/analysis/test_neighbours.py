"""The one neighbour search: the faiss backend against the exact one, the choice by size, and the kNN
disagreement (so the fused default ranking) computed above the former 100k cap."""
from __future__ import annotations

import numpy as np
import pytest

from csl_core.analysis.neighbours import EXACT_MAX_SAMPLES, choose_backend, nearest_neighbours
from csl_core.analysis.scores import compute_scores, default_score


def clustered(n: int, dim: int, *, classes: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return centres[labels] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32), labels


def test_faiss_backend_probing_every_cell_equals_the_exact_search():
    x, _ = clustered(3000, 16)
    exact_i, exact_s = nearest_neighbours(x, k=7, backend="exact")
    faiss_i, faiss_s = nearest_neighbours(x, k=7, backend="faiss", probes=10_000)
    np.testing.assert_allclose(faiss_s, exact_s, atol=1e-5)
    assert (faiss_i == exact_i).mean() > 0.999  # ties may swap places; the similarities agree exactly
    assert not (faiss_i == np.arange(len(x))[:, None]).any()


def test_faiss_backend_finds_the_exact_neighbours_of_clustered_data():
    x, _ = clustered(6000, 32)
    exact_i, _ = nearest_neighbours(x, k=10, backend="exact")
    faiss_i, faiss_s = nearest_neighbours(x, k=10, backend="faiss")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_i, faiss_i)])
    assert recall >= 0.95
    assert (np.diff(faiss_s, axis=1) <= 1e-6).all()  # most similar first


def test_a_sample_whose_cells_hold_too_few_others_is_searched_exactly():
    x, _ = clustered(40, 4, classes=4)
    exact_i, exact_s = nearest_neighbours(x, k=30, backend="exact")
    faiss_i, faiss_s = nearest_neighbours(x, k=30, backend="faiss", probes=1)
    np.testing.assert_allclose(np.sort(faiss_s, axis=1), np.sort(exact_s, axis=1), atol=1e-5)
    assert (faiss_i >= 0).all()


def test_backend_is_chosen_by_size_and_validated():
    assert choose_backend(EXACT_MAX_SAMPLES, cuda=False) == "exact"
    assert choose_backend(EXACT_MAX_SAMPLES + 1, cuda=False) == "faiss"
    assert choose_backend(10**7, cuda=True) == "exact"  # a GPU multiplies 1.28M x 512 in seconds
    with pytest.raises(ValueError, match="backend"):
        nearest_neighbours(np.zeros((5, 2)), k=2, backend="annoy")
    with pytest.raises(ValueError, match="probes"):
        nearest_neighbours(np.zeros((5, 2)), k=2, probes=0)


def test_the_fused_score_is_the_default_ranking_above_100k_samples():
    n = 100_500
    x, labels = clustered(n, 16, classes=10)
    flipped = np.arange(0, n, 1000)
    labels[flipped] = (labels[flipped] + 1) % 10  # a label its look-alikes do not share
    rng = np.random.default_rng(1)
    arrays = {"loss": rng.random((n, 2), dtype=np.float32), "margin": rng.standard_normal((n, 2)).astype(np.float32)}
    scores = compute_scores(arrays, embeddings=x, labels=labels)
    assert "knn_disagreement" in scores.columns and "fused" in scores.columns
    assert default_score(scores) == "fused"
    knn = scores["knn_disagreement"].to_numpy()
    assert knn[flipped].mean() > 0.9 > 0.1 > np.delete(knn, flipped).mean()
