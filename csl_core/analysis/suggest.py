"""The suggested label and how sure it is (pure, no files).

A sample's *class evidence* is the mean of two distributions over the classes: the network's softmax
averaged over training (``probabilities.npy``) and the vote of its nearest neighbours' given labels in the
run's embedding space (the neighbours of ``knn_disagreement``). The suggestion answers "if this label is
wrong, what is right?": the class with the most evidence **other than the given label**, and its
confidence is that class's share of the evidence, in [0, 1]. A run without embeddings (or above the kNN
limit) uses the probabilities alone.

Measured on CIFAR-10N and confusable Fashion-MNIST (docs/bench/cleaning.md): the mean softmax alone leans
towards the given label wherever the network has fitted it, while the neighbours' labels do not; their
mean is right more often than either alone, and its confidence is calibrated enough to act on.
"""
from __future__ import annotations

import numpy as np

# The weight of the neighbours' vote in the class evidence (the softmax gets the rest).
VOTE_WEIGHT = 0.5


def neighbour_vote(neighbour_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each sample's share of neighbours per class, ``(N, num_classes)``, from ``neighbour_labels``
    ``(N, k)`` (the given labels of its ``k`` nearest neighbours, itself excluded). Rows sum to 1 (0 for
    ``k = 0``)."""
    neighbour_labels = np.asarray(neighbour_labels, dtype=np.int64)
    if neighbour_labels.ndim != 2:
        raise ValueError(f"neighbour labels must be (samples, k), got shape {neighbour_labels.shape}")
    n, k = neighbour_labels.shape
    if n and k and (neighbour_labels.min() < 0 or neighbour_labels.max() >= num_classes):
        raise ValueError(f"neighbour labels must lie in 0..{num_classes - 1}")
    votes = np.zeros((n, num_classes))
    if k:
        np.add.at(votes, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), 1.0 / k)
    return votes


def class_evidence(probabilities: np.ndarray, neighbour_labels: np.ndarray | None = None, *,
                   vote_weight: float = VOTE_WEIGHT) -> np.ndarray:
    """The evidence for each class, ``(N, C)``, rows summing to 1: the mean softmax over training
    (``probabilities``), mixed with the neighbours' vote (:func:`neighbour_vote`) at ``vote_weight`` where
    ``neighbour_labels`` are given."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (samples, classes), got shape {probabilities.shape}")
    if not 0.0 <= vote_weight <= 1.0:
        raise ValueError(f"vote_weight must lie in [0, 1], got {vote_weight}")
    if neighbour_labels is None or np.shape(neighbour_labels)[1:] == (0,):
        return probabilities
    if len(neighbour_labels) != len(probabilities):
        raise ValueError(f"{len(neighbour_labels)} rows of neighbour labels for {len(probabilities)} samples")
    vote = neighbour_vote(neighbour_labels, probabilities.shape[1])
    return (1.0 - vote_weight) * probabilities + vote_weight * vote


def per_class_rows(values: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as a float64 ``(samples, classes)`` matrix with one row per label and ``labels`` as int64;
    a ValueError naming ``name`` and the shapes otherwise."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if values.ndim != 2 or len(values) != len(labels):
        raise ValueError(f"{name} must be (samples, classes) with one row per label ({len(labels)}), "
                         f"got shape {values.shape}")
    return values, labels


def suggest(evidence: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The suggested label of each sample, ``(N,)`` int: the class with the most ``evidence`` (``(N, C)``)
    other than its given label (``labels`` ``(N,)``), and the suggestion's confidence, ``(N,)`` in [0, 1]:
    that class's share of the evidence. With a single class there is nothing else to suggest: the given
    label, confidence 0."""
    evidence, labels = per_class_rows(evidence, labels, "evidence")
    n, num_classes = evidence.shape
    if num_classes < 2:
        return labels.copy(), np.zeros(n)
    others = evidence.copy()
    rows = np.arange(n)
    others[rows, labels] = -np.inf
    suggested = others.argmax(axis=1).astype(np.int64)
    return suggested, np.clip(evidence[rows, suggested], 0.0, 1.0)
