"""The stability estimate of memorisation: its math, the subset trainings (known answers, seeded,
resumable, parallel), the command and the dashboard page."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csl_core.analysis.memorization import (
    agreement_by_models,
    compare_scores,
    cosine_similarity,
    default_model_counts,
    spearman,
    stability_memorization,
    subset_mask,
)
from csl_core.config import TrainConfig
from csl_core.data import ImageSource, TrainingSet
from csl_core.engine.memorization import estimate_memorization
from csl_core.engine.train import train
from csl_core.run.memorization import MemorizationFolder
from csl_core.run.store import RunError

# ---------------------------------------------------------------- the estimator's math


def test_memorization_is_in_training_accuracy_minus_held_out_accuracy():
    in_training = np.array([[1, 1, 0, 1],
                            [1, 0, 1, 1],
                            [0, 1, 0, 1],
                            [0, 0, 1, 1]], dtype=bool)
    correct = np.array([[1, 1, 1, 1],
                        [1, 1, 0, 0],
                        [0, 1, 1, 1],
                        [0, 1, 0, 1]], dtype=float)
    estimate = stability_memorization(in_training, correct)
    # sample 0: right in both models that saw it, wrong in both that did not
    assert estimate.loc[0, "memorization"] == 1.0
    # sample 1: right everywhere, learned from the others
    assert estimate.loc[1, "memorization"] == 0.0
    # sample 2: in models 1 and 3 (right 0 of 2), out of 0 and 2 (right 2 of 2)
    assert estimate.loc[2, "memorization"] == -1.0
    assert (estimate.loc[2, "models_in"], estimate.loc[2, "models_out"]) == (2, 2)
    # sample 3: never held out, so there is nothing to compare with
    assert np.isnan(estimate.loc[3, "memorization"]) and estimate.loc[3, "in_accuracy"] == 0.75


def test_the_estimator_refuses_what_is_not_an_accuracy():
    with pytest.raises(ValueError, match="models, samples"):
        stability_memorization(np.ones((3, 4), bool), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stability_memorization(np.ones((2, 3), bool), np.full((2, 3), 2.0))


def test_subsets_are_seeded_per_model_and_of_the_asked_size():
    a = subset_mask(1000, 0.5, seed=3, model=7)
    assert a.sum() == 500
    assert np.array_equal(a, subset_mask(1000, 0.5, seed=3, model=7))
    assert not np.array_equal(a, subset_mask(1000, 0.5, seed=3, model=8))
    assert not np.array_equal(a, subset_mask(1000, 0.5, seed=4, model=7))
    assert subset_mask(10, 0.3, seed=0, model=0).sum() == 3
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            subset_mask(10, bad, seed=0, model=0)


def test_comparison_scores_agreement_over_all_and_the_most_memorised():
    rng = np.random.default_rng(0)
    memorization = rng.uniform(0, 1, 500)
    scores = {"same": memorization * 3, "reversed": -memorization, "noise": rng.uniform(0, 1, 500)}
    table = compare_scores(scores, memorization).set_index(["score", "samples"])
    assert list(table.index.get_level_values("samples").unique()) == ["all", "top 1%", "top 10%"]
    assert table.loc[("same", "all"), "cosine"] == pytest.approx(1.0)
    assert table.loc[("same", "top 10%"), "spearman"] == pytest.approx(1.0)
    assert table.loc[("same", "top 10%"), "n"] == 50 and table.loc[("same", "top 1%"), "n"] == 5
    assert table.loc[("reversed", "all"), "spearman"] == pytest.approx(-1.0)
    assert abs(table.loc[("noise", "all"), "spearman"]) < 0.15
    # a score with negative values is shifted to start at 0, so that its cosine does not depend on its sign
    shifted = compare_scores({"aum-like": memorization - 5}, memorization)
    assert shifted.loc[0, "cosine"] == pytest.approx(cosine_similarity(memorization - memorization.min(),
                                                                       memorization))


def test_comparison_leaves_out_samples_without_an_estimate():
    memorization = np.array([0.1, np.nan, 0.5, 0.9, 0.3])
    score = np.array([1.0, 100.0, 5.0, 9.0, 3.0])
    row = compare_scores({"s": score}, memorization, top_fractions=()).iloc[0]
    assert row["n"] == 4 and row["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        compare_scores({"s": score[:3]}, memorization)


def test_agreement_by_models_measures_the_estimators_own_noise():
    rng = np.random.default_rng(1)
    models, n = 40, 300
    truth = rng.uniform(0, 1, n)
    in_training = np.stack([subset_mask(n, 0.5, 0, k) for k in range(models)])
    # a sample is right when held out with probability 1 - truth, always right when trained on
    correct = np.where(in_training, 1.0, (rng.uniform(0, 1, (models, n)) > truth).astype(float))
    table = agreement_by_models(in_training, correct, truth, default_model_counts(models))
    assert list(table["models"]) == [10, 20, 40]
    # more models, less noise: the halves agree more and the true score is tracked more closely
    assert table["split_half_spearman"].is_monotonic_increasing
    assert table["spearman"].iloc[-1] > table["spearman"].iloc[0] and table["spearman"].iloc[-1] > 0.8
    assert spearman(truth, truth) == pytest.approx(1.0)


# ---------------------------------------------------------------- the subset trainings


def _known_answer_set() -> TrainingSet:
    """8x8 images: two noisy classes of 10 stripes each, a class of 10 exact copies of one checkerboard,
    and one sample of a class of its own: a bright square nothing else looks like."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8]
    stripes_h = (yy % 2) * 200.0
    stripes_v = (xx % 2) * 200.0
    checker = ((xx + yy) % 2) * 200.0
    square = np.where((yy >= 2) & (yy < 6) & (xx >= 2) & (xx < 6), 255.0, 0.0)
    images = ([stripes_h + rng.normal(0, 25, (8, 8)) for _ in range(10)]
              + [stripes_v + rng.normal(0, 25, (8, 8)) for _ in range(10)]
              + [checker] * 10 + [square])
    labels = [0] * 10 + [1] * 10 + [2] * 10 + [3]
    pixels = np.clip(np.stack(images), 0, 255).astype(np.uint8)[..., None]
    source = ImageSource(pixels, np.array(labels), ["horizontal", "vertical", "checker", "square"],
                         [f"s{i:03d}" for i in range(len(labels))])
    samples = pd.DataFrame({"index": np.arange(len(labels)), "sample_id": source.ids, "label": labels,
                            "class_name": [source.classes[c] for c in labels], "image_index": np.arange(len(labels))})
    return TrainingSet(spec="demo", source=source, samples=samples)


@pytest.fixture(scope="module")
def known_run(tmp_path_factory) -> tuple[Path, TrainingSet]:
    """A finished run on the known-answer set (no estimate in it: copy it before estimating)."""
    training_set = _known_answer_set()
    out = tmp_path_factory.mktemp("known") / "run"
    # small batches and a low rate: the lone sample is memorised within 20 epochs in every model that trains on it
    train(TrainConfig(data="demo", epochs=20, batch_size=4, lr=0.01, device="cpu", compute_embeddings=False),
          out, training_set=training_set)
    return out, training_set


@pytest.fixture(scope="module")
def known_estimate(known_run, tmp_path_factory):
    """The known-answer run with an estimate from 8 models."""
    run, training_set = known_run
    run = _copy(run, tmp_path_factory.mktemp("estimated"), "estimated")
    return run, training_set, estimate_memorization(run, models=8, training_set=training_set)


def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


@pytest.mark.slow
def test_memorization_is_near_one_for_a_sample_learnable_only_from_itself_and_near_zero_for_duplicates(
        known_estimate):
    run, training_set, result = known_estimate
    estimate = result.estimate
    labels = training_set.labels
    loner = int(np.flatnonzero(labels == 3)[0])
    assert estimate.loc[loner, "models_in"] >= 2 and estimate.loc[loner, "models_out"] >= 2
    assert estimate.loc[loner, "out_accuracy"] == 0.0       # held out, nothing teaches its class
    assert estimate.loc[loner, "memorization"] >= 0.8       # trained on, it is memorised
    copies = np.flatnonzero(labels == 2)
    assert estimate.loc[copies, "memorization"].abs().max() <= 0.1   # every copy is learned from the others
    stripes = np.flatnonzero(labels < 2)
    assert estimate.loc[stripes, "memorization"].mean() <= 0.1
    assert estimate["memorization"].idxmax() == loner
    # kept in the run folder, and compared with every score of the run
    folder = MemorizationFolder(run)
    pd.testing.assert_frame_equal(folder.estimate(), estimate)
    comparison = folder.comparison()
    assert comparison["models"] == 8 and comparison["measure"] == "correct"
    compared = {row["score"] for row in comparison["table"]}
    assert {"csl", "final_loss", "learning_time", "forgetting_events", "aum", "datamaps_confidence"} <= compared
    assert comparison["cost"]["model_seconds_total"] > 0 and comparison["cost"]["work_ratio"] > 0
    assert len(folder.finished_models()) == 8 and result.trained == 8


@pytest.mark.slow
def test_a_resumed_estimate_equals_an_uninterrupted_one(demo_run, tmp_path):
    whole = _copy(demo_run, tmp_path, "whole")
    pieces = _copy(demo_run, tmp_path, "pieces")
    reference = estimate_memorization(whole, models=4, seed=5)
    first = estimate_memorization(pieces, models=3, seed=5)
    assert first.trained == 3
    folder = MemorizationFolder(pieces)
    kept = folder.model_file(0).stat().st_mtime_ns
    folder.model_file(1).write_bytes(b"half a file")      # what a kill in the middle of a write would leave
    resumed = estimate_memorization(pieces, models=4, seed=5)
    assert resumed.trained == 2                               # models 1 and 3; 0 and 2 were kept
    assert folder.model_file(0).stat().st_mtime_ns == kept
    pd.testing.assert_frame_equal(resumed.estimate, reference.estimate)
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.comparison["table"]),
                                  pd.DataFrame(reference.comparison["table"]))
    # other settings would mix two estimates: refused, with what differs and what to do
    with pytest.raises(RunError, match="fraction.*delete"):
        estimate_memorization(pieces, models=4, seed=5, fraction=0.6)


@pytest.mark.slow
def test_parallel_workers_give_the_same_estimate(demo_run, tmp_path):
    alone = estimate_memorization(_copy(demo_run, tmp_path, "alone"), models=2)
    together = estimate_memorization(_copy(demo_run, tmp_path, "together"), models=2, workers=2)
    assert together.trained == 2 and len(MemorizationFolder(tmp_path / "together").finished_models()) == 2
    # the same subsets and seeds; a worker process rounds differently in the last bits (about 1e-4 in a
    # probability after training), which may tip a near-tie, nothing more
    for model in range(2):
        one = MemorizationFolder(tmp_path / "alone").load_model(model, len(alone.estimate))
        other = MemorizationFolder(tmp_path / "together").load_model(model, len(alone.estimate))
        assert np.array_equal(one["in_training"], other["in_training"])
        np.testing.assert_allclose(one["p_given"], other["p_given"], atol=1e-2)
        assert np.mean(one["correct"] != other["correct"]) <= 0.005


@pytest.mark.slow
def test_the_estimate_refuses_a_run_it_cannot_use(known_run, tmp_path):
    run, training_set = known_run
    with pytest.raises(ValueError, match="at least 2 models"):
        estimate_memorization(run, models=1, training_set=training_set)
    other = _known_answer_set()
    other.samples["sample_id"] = [f"x{i}" for i in range(len(other.samples))]
    with pytest.raises(RunError, match="no longer yields the samples"):
        estimate_memorization(_copy(run, tmp_path, "run"), models=2, training_set=other)


def test_subset_models_train_in_the_runs_own_precision_and_predict_the_rows_asked(known_run, monkeypatch):
    """The subset models follow the trainer: mixed precision where the trainer would use it on this device
    (bf16 on a CPU with bf16 units: 1.5-2.7x faster than float32 here), float32 where the run was trained
    with --no-amp; the softmax comes back for the rows asked only."""
    import torch

    from csl_core.engine import memorization, step
    from csl_core.engine.runtime import autocast_dtype
    from csl_core.run.store import RunStore

    run, training_set = known_run
    store = RunStore(run)
    recipe = memorization.recipe_for(store)
    assert "amp" not in recipe   # the run left the precision to the trainer: so do the subset models
    seen = []
    real_step = step.train_step

    def spy(model, x, *args, amp_dtype=None, **kwargs):
        seen.append(amp_dtype)
        return real_step(model, x, *args, amp_dtype=amp_dtype, **kwargs)

    monkeypatch.setattr(step, "train_step", spy)
    labels = training_set.labels
    rows = np.array([0, 5, 30])
    p = memorization.subset_model_probabilities(training_set.source.images, training_set.image_index, labels,
                                                np.arange(len(labels)) % 2 == 0, {**recipe, "epochs": 1}, seed=0,
                                                predict_rows=rows)
    expected = autocast_dtype(torch.device("cpu"), None)
    assert seen and all(dtype == expected for dtype in seen)
    assert p.shape == (len(labels), 4) and p.dtype == np.float32
    np.testing.assert_allclose(p[rows].sum(axis=1), 1.0, atol=1e-5)
    assert not p[np.setdiff1d(np.arange(len(labels)), rows)].any()
    seen.clear()
    memorization.subset_model_probabilities(training_set.source.images, training_set.image_index, labels,
                                            np.ones(len(labels), dtype=bool), {**recipe, "epochs": 1, "amp": False})
    assert seen and all(dtype is None for dtype in seen)


# ---------------------------------------------------------------- the command and the page


def test_the_command_estimates_and_prints_the_comparison(demo_run, tmp_path, capsys):
    from csl_core.cli import main

    run = _copy(demo_run, tmp_path, "demo")
    assert main(["memorization", "--out", str(run), "--models", "2", "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "from 2 models on 50% of the samples" in printed and "csl" in printed and "cost:" in printed
    assert (run / "memorization" / "estimate.parquet").is_file()
    assert main(["memorization", "--out", str(run), "--data", "fashion-mnist", "--models", "2", "--quiet"]) == 2
    assert "not of 'fashion-mnist'" in capsys.readouterr().err
    assert main(["memorization", "--out", str(run), "--epochs", "40", "--models", "2", "--quiet"]) == 2
    assert "--epochs describe a run to train" in capsys.readouterr().err


@pytest.mark.slow
def test_the_page_shows_the_estimate_the_comparison_and_the_most_memorised(known_run, known_estimate, tmp_path,
                                                                          monkeypatch, open_app):

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("CSL_RUNS_DIR", str(runs))
    bare = _copy(known_run[0], runs, "bare")
    estimated = _copy(known_estimate[0], runs, "estimated")
    _, training_set, result = known_estimate
    at = open_app()
    at.session_state["run_path"] = str(bare)
    at.switch_page("pages/memorization.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("python -m csl_core memorization" in i.value for i in at.info)

    at.session_state["run_path"] = str(estimated)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].value == "8"
    assert at.metric[1].value == f"{_csl_cosine(result.comparison['table']):.3f}"
    loner = int(np.flatnonzero(training_set.labels == 3)[0])
    assert at.selectbox(key="mem_sample").value == loner       # the most memorised sample comes first
    at.selectbox(key="mem_class").set_value(2).run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key="mem_measure").set_value("p_given").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.metric[1].value == f"{_csl_cosine(result.comparison['table_p_given']):.3f}"


def _csl_cosine(rows: list[dict]) -> float:
    return next(r["cosine"] for r in rows if r["score"] == "csl" and r["samples"] == "all")
