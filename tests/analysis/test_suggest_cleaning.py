"""The suggested label, its confidence, the count of wrong labels and the cleaning plan, on constructed
cases whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from csl_core.analysis.cleaning import plan_cleaning, plan_digest
from csl_core.analysis.scores import compute_scores
from csl_core.analysis.suggest import class_evidence, neighbour_vote, suggest


def test_the_neighbours_vote_is_each_class_share_of_the_neighbours():
    vote = neighbour_vote(np.array([[0, 0, 2, 1], [2, 2, 2, 2]]), 3)
    np.testing.assert_allclose(vote, [[0.5, 0.25, 0.25], [0, 0, 1]])
    with pytest.raises(ValueError, match="0..2"):
        neighbour_vote(np.array([[3]]), 3)


def test_the_suggestion_is_the_likeliest_other_class_and_its_share_of_the_evidence():
    probabilities = np.array([[0.80, 0.15, 0.05],    # a memorised wrong label: the softmax leans to it (0)
                              [0.10, 0.20, 0.70]])
    neighbours = np.array([[1, 1, 1, 1], [2, 2, 2, 0]])
    evidence = class_evidence(probabilities, neighbours, vote_weight=0.5)
    np.testing.assert_allclose(evidence.sum(axis=1), 1.0)
    suggested, confidence = suggest(evidence, np.array([0, 2]))
    # The neighbours all say 1 for the first sample: the suggestion is 1, at (0.15 + 1) / 2.
    assert suggested.tolist() == [1, 0]
    np.testing.assert_allclose(confidence, [0.575, (0.10 + 0.25) / 2])
    # The mean softmax alone would not have doubted the first label at all (argmax = the given label).
    assert probabilities.argmax(axis=1)[0] == 0


def test_scores_mix_the_neighbours_labels_into_the_suggestion():
    rng = np.random.default_rng(0)
    n = 80   # 39 look-alikes of sample 0: all 30 of its neighbours are in its cluster
    labels = np.repeat([0, 1], n // 2)
    # Two clean clusters in the embedding space; sample 0 sits in cluster 0 but is labelled 1.
    embeddings = np.where(labels[:, None] == 0, [1.0, 0.0], [0.0, 1.0]) + 0.01 * rng.standard_normal((n, 2))
    labels = labels.copy()
    labels[0] = 1
    probabilities = np.tile([0.5, 0.5], (n, 1))       # the network undecided everywhere
    loss = rng.random((n, 3))
    scores = compute_scores({"loss": loss}, probabilities=probabilities, embeddings=embeddings, labels=labels)
    assert scores.at[0, "suggested_label"] == 0
    assert scores.at[0, "suggested_confidence"] == pytest.approx(0.75)   # (0.5 + 1) / 2
    assert scores.at[0, "knn_disagreement"] > 0.9
    # Without embeddings the same run has only the softmax to go by: no better than a coin.
    alone = compute_scores({"loss": loss}, probabilities=probabilities, labels=labels)
    assert alone.at[0, "suggested_confidence"] == pytest.approx(0.5)


def test_the_cleaning_plan_relabels_the_sure_suspects_drops_the_unsure_and_keeps_the_rest():
    suspicion = np.array([0.9, 0.8, 0.7, 0.6, 0.1, np.nan])
    given = np.array([0, 0, 1, 1, 2, 2])
    suggested = np.array([1, 2, 0, 1, 0, 0])
    confidence = np.array([0.95, 0.4, 0.71, 0.99, 0.99, 0.99])
    plan = plan_cleaning(suspicion, given, suggested, confidence, budget=4, relabel_at=0.7)
    # sample 3's suggestion is its own label: nothing to relabel it to, so it is dropped
    assert plan.action.tolist() == ["relabel", "drop", "relabel", "drop", "keep", "keep"]
    assert plan.label.tolist() == [1, 0, 0, 1, 2, 2]
    assert plan.counts() == {"relabel": 2, "drop": 2, "keep": 2}
    table = plan.by_class(given, ["ankle_boot", "bag", "coat"]).set_index("class")
    assert table.loc["ankle_boot", "relabel (away)"] == 1 and table.loc["ankle_boot", "relabel (into)"] == 1
    assert table.loc["ankle_boot", "after"] == 1 and table.loc["bag", "after"] == 1 and table.loc["coat", "after"] == 2
    assert table.loc["all", "samples"] == 6 and table.loc["all", "after"] == 4
    # the person's own decisions are left alone: a decided sample is not eligible, the next one is taken
    eligible = np.array([False, True, True, True, True, True])
    plan = plan_cleaning(suspicion, given, suggested, confidence, budget=4, eligible=eligible)
    assert plan.action.tolist() == ["keep", "drop", "relabel", "drop", "relabel", "keep"]
    dropped = plan_cleaning(suspicion, given, suggested, confidence, budget=4, drop_only=True)
    assert dropped.counts() == {"relabel": 0, "drop": 4, "keep": 2}
    assert plan_digest(dropped) != plan_digest(plan)
    with pytest.raises(ValueError, match="one entry per sample"):
        plan_cleaning(suspicion, given[:3], suggested, confidence, budget=1)
