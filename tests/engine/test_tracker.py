"""The tracker against values computed by hand on a tiny example."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csl_core.engine.tracker import EPOCH_FIELDS, CSLTracker


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


# Three samples, three classes. Epoch 1 sees samples 2 and 0; sample 1 is not seen.
LOGITS_1 = [[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]  # rows: sample 0, sample 2
TARGETS_1 = [2, 0]
# Epoch 2 sees every sample once, with losses handed in by the caller.
LOGITS_2 = [[3.0, 0.0, 1.0], [0.0, 0.5, 0.0], [1.0, 1.0, -1.0]]
TARGETS_2 = [0, 1, 2]
LOSSES_2 = [0.1, 0.2, 0.3]


def run_two_epochs(**kwargs) -> tuple[CSLTracker, dict, dict]:
    tracker = CSLTracker(3, 3, **kwargs)
    tracker.update(torch.tensor([0, 2]), torch.tensor(LOGITS_1), torch.tensor(TARGETS_1))
    first = tracker.end_epoch()
    tracker.update(torch.tensor([0, 1, 2]), torch.tensor(LOGITS_2), torch.tensor(TARGETS_2),
                   torch.tensor(LOSSES_2))
    second = tracker.end_epoch()
    return tracker, first, second


def test_one_epoch_matches_hand_computed_values():
    _, first, _ = run_two_epochs()
    p0 = softmax(LOGITS_1[0])  # sample 0, given label 2, predicted 1
    p2 = softmax(LOGITS_1[1])  # sample 2, given label 0, predicted 0
    assert set(first) == set(EPOCH_FIELDS)
    np.testing.assert_allclose(first["loss"][[0, 2]], [-math.log(p0[2]), -math.log(p2[0])], rtol=1e-6)
    assert first["correct"].tolist() == [False, False, True]
    np.testing.assert_allclose(first["margin"][[0, 2]], [0.0 - 1.0, 2.0 - 0.0])
    np.testing.assert_allclose(first["p_given"][[0, 2]], [p0[2], p2[0]], rtol=1e-6)
    np.testing.assert_allclose(first["p_max"][[0, 2]], [p0[1], p2[0]], rtol=1e-6)
    for name in ("loss", "margin", "p_given", "p_max"):
        assert np.isnan(first[name][1]), f"unseen sample has a {name}"


def test_caller_losses_are_recorded_and_summed_into_csl():
    tracker, first, second = run_two_epochs()
    np.testing.assert_allclose(second["loss"], LOSSES_2)
    np.testing.assert_allclose(second["margin"], [3.0 - 1.0, 0.5 - 0.0, -1.0 - 1.0])
    assert second["correct"].tolist() == [True, True, False]
    history = tracker.history()
    assert history["loss"].shape == (3, 2)
    expected = [first["loss"][0] + 0.1, 0.2, first["loss"][2] + 0.3]  # the unseen epoch adds nothing
    np.testing.assert_allclose(tracker.cumulative_loss(), expected, rtol=1e-6)


def test_mean_probabilities_average_every_visit():
    tracker, _, _ = run_two_epochs()
    means = tracker.mean_probabilities()
    expected = [
        np.mean([softmax(LOGITS_1[0]), softmax(LOGITS_2[0])], axis=0),
        softmax(LOGITS_2[1]),  # visited once
        np.mean([softmax(LOGITS_1[1]), softmax(LOGITS_2[2])], axis=0),
    ]
    np.testing.assert_allclose(means, expected, rtol=1e-6)


def test_a_sample_seen_twice_in_an_epoch_is_averaged_not_overweighted():
    tracker = CSLTracker(2, 2)
    tracker.update(torch.tensor([0, 0, 1]), torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]),
                   torch.tensor([0, 0, 1]))
    np.testing.assert_allclose(tracker.mean_probabilities()[0], [0.5, 0.5], rtol=1e-6)


def test_without_probabilities_or_history():
    tracker, _, _ = run_two_epochs(track_probabilities=False, keep_history=False)
    assert tracker.mean_probabilities() is None
    with pytest.raises(RuntimeError, match="keep_history"):
        tracker.history()


def test_state_dict_round_trip_continues_the_running_sums():
    tracker, _, _ = run_two_epochs()
    fresh = CSLTracker(3, 3)
    fresh.load_state_dict(tracker.state_dict())
    assert fresh.epochs_done == 2
    np.testing.assert_allclose(fresh.mean_probabilities(), tracker.mean_probabilities())


def test_in_an_ordinary_training_loop_csl_is_the_sum_of_the_training_losses():
    torch.manual_seed(0)
    x = torch.randn(40, 5)
    y = torch.randint(0, 3, (40,))
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = CSLTracker(num_samples=40, num_classes=3)
    expected = torch.zeros(40)
    for _ in range(3):
        for index in torch.randperm(40).split(16):
            logits = model(x[index])
            losses = F.cross_entropy(logits, y[index], reduction="none")
            tracker.update(index, logits, y[index], losses)
            expected[index] += losses.detach()
            losses.mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        tracker.end_epoch()
    np.testing.assert_allclose(tracker.cumulative_loss(), expected.numpy(), rtol=1e-5)


def test_rejects_sizes_that_cannot_be_tracked():
    with pytest.raises(ValueError, match="two classes"):
        CSLTracker(10, 1)
