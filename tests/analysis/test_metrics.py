import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from csl_core.analysis import metrics
from csl_core.analysis.metrics import (
    aupr,
    auroc,
    detection_metrics,
    fpr_at_95_tpr,
    fpr_at_tpr,
    precision_at_k,
    roc_curve,
    top_k,
)

# Positives score 0.9 and 0.7, negatives 0.8, 0.2, 0.1. Reading the list from the top:
# 0.9 P, 0.8 N, 0.7 P, 0.2 N, 0.1 N.
HAND_TRUTH = np.array([1, 0, 1, 0, 0], dtype=bool)
HAND_SCORE = np.array([0.9, 0.8, 0.7, 0.1, 0.2])


def test_hand_computed_case():
    # AUROC: of the 2 x 3 (positive, negative) pairs, only (0.7, 0.8) is ordered wrongly -> 5/6.
    assert auroc(HAND_TRUTH, HAND_SCORE) == pytest.approx(5 / 6)
    # AP: recall 1/2 reached at precision 1/1, recall 2/2 at precision 2/3.
    assert aupr(HAND_TRUTH, HAND_SCORE) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Finding both positives (TPR 1 >= 0.95) means reading down to 0.7: one of three negatives passed.
    assert fpr_at_95_tpr(HAND_TRUTH, HAND_SCORE) == pytest.approx(1 / 3)
    # k = 2 positives: the top two are 0.9 (P) and 0.8 (N).
    assert precision_at_k(HAND_TRUTH, HAND_SCORE) == pytest.approx(0.5)
    assert precision_at_k(HAND_TRUTH, HAND_SCORE, k=3) == pytest.approx(2 / 3)
    fpr, tpr = roc_curve(HAND_TRUTH, HAND_SCORE)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1, 1])


def test_ties_count_half_and_perfect_ranking():
    assert auroc([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    perfect = detection_metrics([False, False, True, True], [0.1, 0.2, 0.8, 0.9])
    assert perfect == {"auroc": 1.0, "aupr": 1.0, "fpr_at_95_tpr": 0.0, "precision_at_k": 1.0}
    reversed_ = detection_metrics([True, True, False, False], [0.1, 0.2, 0.8, 0.9])
    assert reversed_["auroc"] == 0.0 and reversed_["fpr_at_95_tpr"] == 1.0 and reversed_["precision_at_k"] == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_against_sklearn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    truth = rng.random(n) < rng.uniform(0.01, 0.3)
    truth[:2] = [True, False]
    score = rng.normal(size=n) + 1.5 * truth
    if seed % 2:
        score = np.round(score, 1)  # many ties
    assert auroc(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    assert aupr(truth, score) == pytest.approx(average_precision_score(truth, score), abs=1e-12)
    fpr, tpr, _ = sk_roc_curve(truth, score, drop_intermediate=False)
    assert fpr_at_95_tpr(truth, score) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    assert fpr_at_tpr(truth, score, 0.5) == pytest.approx(fpr[np.argmax(tpr >= 0.5)], abs=1e-12)
    k = int(truth.sum())
    expected = truth[np.argsort(-score, kind="stable")[:k]].mean()
    assert precision_at_k(truth, score) == pytest.approx(expected)


def test_top_k_is_most_suspicious_first_with_stable_ties_and_nan_last():
    np.testing.assert_array_equal(top_k(np.array([0.3, np.nan, 0.9, 0.3]), 3), [2, 0, 3])


@pytest.mark.parametrize("truth, score, message", [
    ([True, False], [0.1], "must match"),
    ([True, True], [0.1, 0.2], "at least one positive and one negative"),
    ([False, False], [0.1, 0.2], "at least one positive and one negative"),
    ([True, False], [np.nan, 0.2], "NaN"),
])
def test_invalid_inputs_say_what_is_wrong(truth, score, message):
    with pytest.raises(ValueError, match=message):
        auroc(truth, score)


def test_precision_at_k_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be between"):
        precision_at_k(HAND_TRUTH, HAND_SCORE, k=0)


def test_one_sort_report_equals_each_metric_and_the_roc_curve():
    rng = np.random.default_rng(7)
    truth = rng.random(3000) < 0.05
    score = np.round(rng.normal(size=3000) + 2 * truth, 1)  # rounded: many ties, at the cut too
    report, fpr, tpr = metrics.detection_report(truth, score)
    assert report == pytest.approx({name: fn(truth, score) for name, fn in metrics.METRICS.items()}, abs=1e-12)
    expected_fpr, expected_tpr = metrics.roc_curve(truth, score)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)


@pytest.mark.parametrize("seed", range(4))
def test_one_sort_report_breaks_big_ties_at_the_cut_by_sample_order(seed):
    # Integer scores (learning time, forgetting events): a few huge tie groups, one of them across k.
    rng = np.random.default_rng(seed)
    truth = rng.random(5000) < 0.1
    score = rng.integers(0, 4, 5000) + truth * rng.integers(0, 2, 5000)
    report, _, _ = metrics.detection_report(truth, score)
    k = int(truth.sum())
    assert report["precision_at_k"] == pytest.approx(truth[np.argsort(-score, kind="stable")[:k]].mean(), abs=1e-12)
    assert report["precision_at_k"] == pytest.approx(precision_at_k(truth, score), abs=1e-12)


def test_evaluate_scores_ranks_every_available_score_and_thins_its_roc_curve():
    import pandas as pd

    rng = np.random.default_rng(11)
    truth = rng.random(2000) < 0.1
    csl = rng.normal(size=2000) + 3 * truth
    csl[5] = np.nan  # a sample never seen ranks least suspicious
    scores = pd.DataFrame({"csl": csl, "final_loss": rng.normal(size=2000) + truth,
                           "aum": -(rng.normal(size=2000) + 2 * truth)})  # AUM: lower = more suspicious
    result = metrics.evaluate_scores(scores, truth, roc_points=50, workers=2)
    assert [row["score"] for row in result["scores"]] == ["csl", "aum", "final_loss"]  # best AUROC first
    for row in result["scores"]:
        oriented = {"csl": np.nan_to_num(csl, nan=-np.inf), "final_loss": scores["final_loss"].to_numpy(),
                    "aum": -scores["aum"].to_numpy()}[row["score"]]
        assert row["auroc"] == pytest.approx(roc_auc_score(truth, np.nan_to_num(oriented, neginf=-1e300)))
        assert row["precision_at_k"] == pytest.approx(precision_at_k(truth, np.nan_to_num(oriented, neginf=-1e300)))
    assert len(result["roc_fpr"]) == 50 and set(result["roc_tpr"]) == {"csl", "aum", "final_loss"}
    tpr = np.asarray(result["roc_tpr"]["csl"])
    assert tpr[0] >= 0 and tpr[-1] == pytest.approx(1.0) and (np.diff(tpr) >= 0).all()


def test_errors_found_counts_positives_in_the_top_k():
    from csl_core.analysis.metrics import errors_found

    truth = np.array([0, 1, 0, 1, 1, 0, 0, 0], dtype=bool)
    score = np.array([0.1, 0.9, 0.8, 0.7, 0.2, 0.3, 0.05, 0.0])   # order: 1, 2, 3, 5, 4, 0, 6, 7
    k, found = errors_found(truth, score)
    assert k.tolist() == list(range(9))
    assert found.tolist() == [0, 1, 1, 2, 2, 3, 3, 3, 3]
    k, found = errors_found(truth, score, up_to=3, points=400)
    assert k.tolist() == [0, 1, 2, 3] and found.tolist() == [0, 1, 1, 2]
    k, found = errors_found(np.arange(1000) % 10 == 0, -np.arange(1000.0), points=10)
    assert len(k) == 11 and k[-1] == 1000 and found[-1] == 100 and found[1] == 10
