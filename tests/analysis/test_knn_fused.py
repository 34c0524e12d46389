"""kNN label disagreement against a brute-force reference, the fused score's orientation, the default ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csl_core.analysis.scores import SCORES, compute_scores, default_score, knn_disagreement, rank_fusion, suspicion


def _brute_force(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    out = np.empty(len(labels))
    for i in range(len(labels)):
        similarity = unit @ unit[i]
        similarity[i] = -np.inf
        nearest = np.argsort(-similarity, kind="stable")[:k]
        out[i] = np.mean(labels[nearest] != labels[i])
    return out


@pytest.mark.parametrize("k", [1, 5, 30])
def test_knn_disagreement_matches_brute_force(k):
    rng = np.random.default_rng(k)
    embeddings = rng.normal(size=(150, 12))
    labels = rng.integers(0, 4, size=150)
    assert np.allclose(knn_disagreement(embeddings, labels, k=k), _brute_force(embeddings, labels, k))


def test_knn_disagreement_finds_a_label_its_cluster_does_not_share():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 10
    labels = np.repeat(np.arange(3), 40)
    embeddings = centres[labels] + rng.normal(size=(120, 8))
    labels = labels.copy()
    labels[[5, 50, 100]] = [1, 2, 0]  # three samples wear another cluster's label
    score = knn_disagreement(embeddings, labels, k=10)
    assert set(np.argsort(-score)[:3]) == {5, 50, 100}
    assert score[[5, 50, 100]].min() == 1.0


def test_knn_disagreement_refuses_mismatched_input():
    with pytest.raises(ValueError, match="one row per label"):
        knn_disagreement(np.zeros((5, 3)), np.zeros(4, dtype=int))


def test_rank_fusion_keeps_high_means_suspicious():
    a = np.array([0.1, 0.9, 0.5, 0.3])
    b = np.array([1.0, 4.0, 3.0, 2.0])
    fused = rank_fusion(a, b)
    assert np.argmax(fused) == 1 and np.argmin(fused) == 0  # both agree: 1 worst, 0 best
    assert np.allclose(rank_fusion(a), [0.25, 1.0, 0.75, 0.5])
    # one score says the opposite of the other: the fused ranks tie
    assert np.allclose(rank_fusion(a, -a), 0.625)


def test_compute_scores_fuses_csl_with_knn_and_orients_it():
    rng = np.random.default_rng(1)
    n, epochs = 300, 4
    labels = rng.integers(0, 3, size=n)
    loss = rng.uniform(0.1, 0.5, size=(n, epochs))
    embeddings = np.eye(3)[labels] * 5 + rng.normal(scale=0.1, size=(n, 3))
    mislabeled = np.array([3, 17, 42])
    labels_seen = labels.copy()
    labels_seen[mislabeled] = (labels[mislabeled] + 1) % 3
    loss[mislabeled] += 2.0  # high loss and a label the neighbours do not share
    margin = rng.uniform(1.0, 3.0, size=(n, epochs))
    margin[mislabeled] -= 4.0  # and a negative margin (low AUM is suspicious)
    scores = compute_scores({"loss": loss, "margin": margin}, embeddings=embeddings, labels=labels_seen)
    expected = rank_fusion(scores["csl"].to_numpy(), -scores["aum"].to_numpy(), scores["knn_disagreement"].to_numpy())
    assert np.allclose(scores["fused"], expected)
    assert SCORES["fused"].suspicious_when_high and SCORES["knn_disagreement"].suspicious_when_high
    assert set(np.argsort(-suspicion(scores, "fused"))[:3]) == set(mislabeled)
    assert default_score(scores) == "fused"
    assert default_score(scores.drop(columns=["fused"])) == "csl"


def test_no_embeddings_no_knn_scores():
    scores = compute_scores({"loss": np.ones((5, 2))}, samples=pd.DataFrame({"label": [0, 1, 0, 1, 0]}))
    assert "knn_disagreement" not in scores.columns and "fused" not in scores.columns
