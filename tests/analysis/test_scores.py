"""Every score on small constructed arrays whose answers are known."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from csl_core.analysis.scores import (
    class_average,
    class_averages,
    compute_scores,
    forgetting_events,
    learning_time,
    rank_descending,
    suspicion,
)

nan = np.nan

CORRECT = np.array([
    [1, 1, 1, 1],   # always right
    [0, 1, 1, 1],   # learned at epoch 1
    [1, 0, 1, 1],   # forgotten once, learned for good at epoch 2
    [1, 1, 1, 0],   # wrong at the end: never learned
    [0, 0, 0, 0],   # never right
    [1, 0, 1, 0],   # forgotten twice
], dtype=bool)


def test_learning_time_is_the_first_epoch_from_which_the_sample_stays_correct():
    assert learning_time(CORRECT).tolist() == [0, 1, 2, 4, 4, 4]


def test_forgetting_events_count_correct_to_incorrect_transitions():
    assert forgetting_events(CORRECT).tolist() == [0, 0, 1, 1, 0, 2]
    assert forgetting_events(CORRECT[:, :1]).tolist() == [0] * 6


LOSS = np.array([
    [1.0, 2.0, 3.0],
    [0.5, nan, 0.25],   # not seen in epoch 1
    [4.0, 1.0, nan],    # not seen in the last epoch: its final loss is the last one seen
    [nan, nan, nan],    # never seen
], dtype=np.float32)
MARGIN = np.array([[2.0, 4.0, 6.0], [-1.0, nan, 1.0], [-3.0, -3.0, nan], [nan, nan, nan]])
P_GIVEN = np.array([[0.2, 0.4, 0.6], [0.5, nan, 0.5], [0.1, 0.3, nan], [nan, nan, nan]])
P_MAX = np.array([[0.5, 0.6, 0.9], [0.5, nan, 0.7], [0.8, 0.6, nan], [nan, nan, nan]])
CORRECT_4 = np.array([[0, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    arrays = {"loss": LOSS, "margin": MARGIN, "p_given": P_GIVEN, "p_max": P_MAX, "correct": CORRECT_4,
              "eval_loss": LOSS * 2}
    probabilities = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5], [0.1, 0.9]])
    samples = pd.DataFrame({"index": range(4), "sample_id": list("abcd"), "label": [0, 1, 0, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a never-seen sample is a normal case, not a warning
        return compute_scores(arrays, samples=samples, probabilities=probabilities)


def test_loss_scores_skip_epochs_in_which_a_sample_was_not_seen(scores):
    np.testing.assert_allclose(scores["csl"], [6.0, 0.75, 5.0, nan])     # never seen: unknown (#29), not 0
    np.testing.assert_allclose(scores["mean_loss"], [2.0, 0.375, 2.5, nan])
    np.testing.assert_allclose(scores["final_loss"], [3.0, 0.25, 1.0, nan])
    np.testing.assert_allclose(scores["eval_csl"], [12.0, 1.5, 10.0, nan])


def test_confidence_aum_and_data_maps(scores):
    np.testing.assert_allclose(scores["in_confidence"], [0.1, 0.3, 0.4, nan])
    np.testing.assert_allclose(scores["in_confidence_given"], [0.4, 0.5, 0.7, nan])
    np.testing.assert_allclose(scores["aum"], [4.0, 0.0, -3.0, nan])
    np.testing.assert_allclose(scores["datamaps_confidence"], [0.4, 0.5, 0.2, nan])
    np.testing.assert_allclose(scores["datamaps_variability"], [np.std([0.2, 0.4, 0.6]), 0.0, 0.1, nan])
    assert scores["learning_time"].tolist() == [1, 2, 3, 3]
    assert scores["forgetting_events"].tolist() == [0, 1, 0, 0]


def test_suggested_label_and_sample_table_columns(scores):
    # Without embeddings the evidence is the mean softmax; the suggestion is the likeliest *other* class.
    assert scores["suggested_label"].tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(scores["suggested_confidence"], [0.3, 0.4, 0.5, 0.1])
    np.testing.assert_allclose(scores["label_evidence"], [0.7, 0.6, 0.5, 0.9])
    assert scores.index.name == "index" and scores.index.tolist() == [0, 1, 2, 3]
    assert scores["sample_id"].tolist() == list("abcd") and "label" in scores.columns
    assert scores["csl_rank"].tolist() == [1, 3, 2, 4]


def test_suspicion_points_every_score_the_same_way(scores):
    assert np.nanargmax(suspicion(scores, "csl")) == 0
    assert np.nanargmax(suspicion(scores, "aum")) == 2           # lowest margin
    assert np.nanargmax(suspicion(scores, "datamaps_confidence")) == 2
    assert suspicion(scores, "learning_time").tolist() == [1, 2, 3, 3]
    with pytest.raises(ValueError, match="known scores: csl"):
        suspicion(scores, "vibes")


def test_chunked_scoring_equals_scoring_at_once():
    rng = np.random.default_rng(0)
    arrays = {"loss": rng.random((103, 5)).astype(np.float32), "correct": rng.random((103, 5)) > 0.5,
              "margin": rng.normal(size=(103, 5)), "p_given": rng.random((103, 5)),
              "p_max": rng.random((103, 5))}
    whole = compute_scores(arrays)
    chunked = compute_scores(arrays, chunk_rows=10)
    pd.testing.assert_frame_equal(whole, chunked)


def test_zero_epochs_and_mismatched_inputs():
    empty = compute_scores({"loss": np.empty((3, 0), np.float32), "correct": np.empty((3, 0), bool),
                            "p_max": np.empty((3, 0))})
    assert empty["csl"].isna().all()                                      # no epoch: nothing seen
    assert empty["final_loss"].isna().all() and empty["in_confidence"].isna().all()
    assert empty["learning_time"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="'margin' has 2 rows"):
        compute_scores({"loss": np.zeros((3, 1)), "margin": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="sample table has 2 rows"):
        compute_scores({"loss": np.zeros((3, 1))}, samples=pd.DataFrame({"index": [0, 1]}))
    with pytest.raises(ValueError, match="at least the 'loss'"):
        compute_scores({})


def test_rank_descending_breaks_ties_by_index_and_puts_nan_last():
    assert rank_descending(np.array([0.5, nan, 2.0, 0.5, -1.0])).tolist() == [2, 5, 1, 3, 4]


def test_class_average():
    values = np.array([[1.0, 2.0], [3.0, nan], [10.0, 10.0]])
    np.testing.assert_allclose(class_average(values, np.array([0, 0, 1]), 0), [2.0, 2.0])
    assert np.isnan(class_average(values, np.array([0, 0, 1]), 5)).all()


def test_class_averages_match_each_class_average_in_any_chunking():
    rng = np.random.default_rng(3)
    values = rng.random((1000, 7))
    values[rng.random((1000, 7)) < 0.1] = nan
    labels = rng.integers(0, 5, 1000)
    labels[labels == 4] = 3  # class 4 has no sample: NaN throughout
    for chunk_rows in (1000, 64, 1):
        means = class_averages(values, labels, 5, chunk_rows=chunk_rows)
        assert means.shape == (5, 7)
        for label in range(4):
            np.testing.assert_allclose(means[label], class_average(values, labels, label))
        assert np.isnan(means[4]).all()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        class_averages(values, labels, 3)


def test_every_entry_of_the_table_is_computed_from_what_it_needs_and_only_then():
    from csl_core.analysis.scores import COLUMNS, SCORES

    rng = np.random.default_rng(0)
    n, epochs, classes = 40, 3, 4
    arrays = {"loss": rng.random((n, epochs)), "eval_loss": rng.random((n, epochs)),
              "correct": rng.random((n, epochs)) > 0.5, "margin": rng.normal(size=(n, epochs)),
              "p_given": rng.random((n, epochs)), "p_max": rng.random((n, epochs))}
    probabilities = rng.dirichlet(np.ones(classes), n)
    labels = rng.integers(0, classes, n)
    embeddings = rng.normal(size=(n, 5))
    full = compute_scores(arrays, probabilities=probabilities, embeddings=embeddings, labels=labels)
    assert set(SCORES) | set(COLUMNS) <= set(full.columns)
    # each column is that entry's compute (with its parameters) on its needs, no other: computed again here
    # from the inputs, the neighbours' labels and the columns it reads
    from csl_core.analysis.scores import nearest_neighbour_indices

    k = max(entry.params.get("neighbours", 0) for entry in (*SCORES.values(), *COLUMNS.values()))
    inputs = {**{name: np.asarray(a, dtype=bool if name == "correct" else np.float64) for name, a in arrays.items()},
              "probabilities": probabilities, "labels": labels,
              "neighbour_labels": labels[nearest_neighbour_indices(embeddings, k=k)]}
    for name, entry in {**SCORES, **COLUMNS}.items():
        values = full[name].to_numpy(np.float64)
        assert np.isfinite(values).all(), name
        expected = np.broadcast_to(entry({**inputs, **{c: full[c].to_numpy() for c in full.columns}}), (n,))
        np.testing.assert_allclose(values, np.asarray(expected, np.float64), err_msg=name)
    # without a margin array there is no AUM, and fused fuses what is there (CSL and kNN)
    no_margin = compute_scores({k: v for k, v in arrays.items() if k != "margin"}, probabilities=probabilities,
                               embeddings=rng.normal(size=(n, 5)), labels=labels)
    assert "aum" not in no_margin.columns and "fused" in no_margin.columns
    only_loss = compute_scores({"loss": arrays["loss"]})
    needs_more = [s.name for s in (*SCORES.values(), *COLUMNS.values()) if set(s.needs) - {"loss", "csl"}]
    assert not set(needs_more) & set(only_loss.columns)
    assert {"csl", "mean_loss", "final_loss", "csl_rank"} <= set(only_loss.columns)
