import json
import math

import numpy as np
import pytest
import torch

from csl_core.bench import (
    BenchConfig,
    Setting,
    default_duplicate_pairs,
    input_loss_curvature,
    plan,
    planning,
    relabel,
    runner,
    select_rows,
)
from csl_core.cli import main
from csl_core.data import build_training_set, inject_duplicates, inject_label_noise
from csl_core.engine.models import build_model
from csl_core.engine.preprocess import Preprocess
from csl_core.run.store import RunStore

DEMO_ARGS = ["bench", "--data", "demo", "--noise", "0.1", "--duplicates", "4", "--seeds", "1", "--epochs", "2",
             "--baselines", "fast", "--clean-at", "0.1", "--quiet"]


@pytest.fixture(scope="module")
def single_thread():
    # Two cores shared by many processes: one thread each avoids OpenMP threads waiting on each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_bench(tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("bench") / "demo"
    assert main([*DEMO_ARGS, "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------- protocol invariants

@pytest.mark.parametrize("n, fraction", [(1437, 0.01), (1437, 0.1), (20000, 0.05), (999, 0.02), (7, 0.5)])
def test_noise_flips_floor_p_n_labels_and_never_keeps_the_class(n, fraction):
    labels = np.random.default_rng(0).integers(0, 10, size=n)
    noisy, flipped = inject_label_noise(labels, fraction, 10, seed=3)
    assert len(flipped) == math.floor(fraction * n) == len(np.unique(flipped))
    assert np.all(noisy[flipped] != labels[flipped])
    untouched = np.setdiff1d(np.arange(n), flipped)
    np.testing.assert_array_equal(noisy[untouched], labels[untouched])
    again, flipped_again = inject_label_noise(labels, fraction, 10, seed=3)
    np.testing.assert_array_equal(again, noisy)


def test_noise_draws_every_other_class():
    labels = np.zeros(20000, dtype=np.int64)
    noisy, flipped = inject_label_noise(labels, 0.5, 4, seed=1)
    counts = np.bincount(noisy[flipped], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 0.3 * len(flipped)


def test_duplicate_pairs_are_disjoint_and_conflicting():
    n = 500
    labels = np.random.default_rng(1).integers(0, 10, size=n)
    image_index, new_labels, pairs = inject_duplicates(np.arange(n), labels, 20, 10, seed=5)
    assert pairs.shape == (20, 2) and len(np.unique(pairs)) == 40
    a, b = pairs[:, 0], pairs[:, 1]
    np.testing.assert_array_equal(image_index[a], b)
    np.testing.assert_array_equal(new_labels[b], labels[b])
    assert np.all(new_labels[a] != new_labels[b])
    others = np.setdiff1d(np.arange(n), a)
    np.testing.assert_array_equal(image_index[others], others)


@pytest.mark.parametrize("setting", [Setting("noise", 0.05), Setting("duplicates", 7)])
def test_positives_are_exactly_the_injected_samples(setting):
    noise = setting.value if setting.kind == "noise" else 0.0
    pairs = int(setting.value) if setting.kind == "duplicates" else 0
    ts = build_training_set("demo", inject_noise=noise, inject_duplicates_pairs=pairs, seed=1)
    truth = ts.samples[setting.positive_column].to_numpy(bool)
    if setting.kind == "noise":
        assert truth.sum() == math.floor(0.05 * len(ts))
        assert not ts.samples["is_duplicate"].any()
        np.testing.assert_array_equal(truth, ts.labels != ts.samples["true_label"].to_numpy())
    else:
        assert truth.sum() == 2 * pairs
        partner = ts.samples["duplicate_of"].to_numpy()
        members = np.flatnonzero(truth)
        np.testing.assert_array_equal(partner[partner[members]], members)  # partners point at each other
        assert np.all(ts.image_index[members] == ts.image_index[partner[members]])  # same image
        assert np.all(ts.labels[members] != ts.labels[partner[members]])  # conflicting labels
        assert not ts.samples["is_mislabeled"][~truth].any()


def test_plan_orders_detection_before_cleaning_and_scales_duplicates():
    assert default_duplicate_pairs(20000) == 100 and default_duplicate_pairs(60000) == 250
    assert default_duplicate_pairs(100) == 1
    config = BenchConfig(noise=(0.05, 0.1), duplicates=None, seeds=(1, 2), clean_at=(0.1,))
    settings, tasks = plan(config, 1000)
    assert [s.name for s in settings] == ["noise-0.05", "noise-0.1", "duplicates-5"]
    kinds = [t.kind for t in tasks]
    assert kinds.count("detect") == kinds.count("cleanlab") == 6
    assert kinds.count("clean-drop") == kinds.count("clean-relabel") == kinds.count("true-labels") == 2
    last_detection = max(i for i, k in enumerate(kinds) if k in ("detect", "cleanlab"))
    assert all(k in ("detect", "cleanlab") for k in kinds[: last_detection + 1])
    with pytest.raises(ValueError, match="not among the noise levels"):
        BenchConfig(noise=(0.05,), clean_at=(0.1,)).validate()
    with pytest.raises(ValueError, match="unknown baseline set"):
        BenchConfig(baselines="slow").validate()


def test_select_rows_and_relabel_keep_the_ground_truth_consistent():
    ts = build_training_set("demo", inject_noise=0.1, inject_duplicates_pairs=0, seed=1)
    flipped = np.flatnonzero(ts.samples["is_mislabeled"].to_numpy())
    dropped = select_rows(ts, np.setdiff1d(np.arange(len(ts)), flipped[:10]))
    assert len(dropped) == len(ts) - 10 and list(dropped.samples["index"]) == list(range(len(dropped)))
    assert dropped.samples["is_mislabeled"].sum() == len(flipped) - 10 and dropped.test is ts.test
    true = ts.samples["true_label"].to_numpy()
    fixed = relabel(ts, flipped[:5], true[flipped[:5]])
    assert fixed.samples["is_mislabeled"].sum() == len(flipped) - 5
    assert ts.samples["is_mislabeled"].sum() == len(flipped)  # the original is untouched
    assert select_rows(ts, [3, 1], keep_test=False).test is None


def test_input_loss_curvature_is_per_sample_and_reproducible(single_thread):
    ts = build_training_set("demo", inject_noise=0.0, inject_duplicates_pairs=0, seed=1, subset=64)
    torch.manual_seed(0)
    model = build_model("small-cnn", in_channels=1, num_classes=10)
    preprocess = Preprocess([0.5], [0.3], augment=False, flip=False, pad=0, device=torch.device("cpu"),
                            channels_last=False)
    first = input_loss_curvature(model, ts.dataset(), preprocess, torch.device("cpu"), directions=3, seed=4)
    second = input_loss_curvature(model, ts.dataset(), preprocess, torch.device("cpu"), directions=3, seed=4)
    assert first.shape == (64,) and np.all(first >= 0) and np.isfinite(first).all()
    np.testing.assert_allclose(first, second, rtol=1e-5)
    # each sample's own curvature: not one value for all, and other random directions rank the samples
    # alike (a property of the samples, not of the draw)
    from scipy.stats import spearmanr

    assert first.std() > 0.1 * first.mean() > 0
    other = input_loss_curvature(model, ts.dataset(), preprocess, torch.device("cpu"), directions=3, seed=5)
    assert not np.allclose(other, first) and spearmanr(first, other)[0] > 0.7


# ---------------------------------------------------------------- the whole bench on the demo

@pytest.mark.slow
def test_whole_bench_on_the_demo_writes_every_method_and_output(demo_bench):
    results = json.loads((demo_bench / "results.json").read_text())
    assert results["missing_tasks"] == []
    noise, dups = results["settings"]["noise-0.1"], results["settings"]["duplicates-4"]
    expected = set(planning.RUN_METHODS) | {"cleanlab"}
    assert set(noise["methods"]) == expected and set(dups["methods"]) == expected
    for entry in (noise, dups):
        for stats in entry["methods"].values():
            for metric in ("auroc", "aupr", "fpr_at_95_tpr", "precision_at_k"):
                assert 0.0 <= stats[metric]["mean"] <= 1.0
            assert stats["seconds"]["mean"] > 0 and stats["x_plain_run"]["mean"] > 0
    assert noise["extras"]["positives"] == [math.floor(0.1 * results["num_samples"])]
    assert dups["extras"]["positives"] == [8]
    csl = noise["methods"]["csl"]
    # CSL costs the training run plus scoring; wall-time ratios between tasks depend on the machine's load.
    assert csl["x_plain_run"]["mean"] >= 1.0
    assert noise["methods"]["eval_csl"]["seconds"]["mean"] > csl["seconds"]["mean"]
    cleaning = noise["cleaning"]
    for column in ("noisy", "drop", "relabel", "true"):
        assert 0.0 < cleaning[column]["mean"] <= 1.0
    assert dups["cleaning"] is None
    markdown = (demo_bench / "results.md").read_text()
    assert "| CSL (training pass) |" in markdown and "confident learning" in markdown
    assert "## Cleaning effect" in markdown and "python -m csl_core bench" in markdown
    assert "## Targets" not in markdown and "MISSED" not in markdown  # the project's targets live in docs/benchmarks.md
    assert "Verdict" in markdown
    html = (demo_bench / "roc.html").read_text()
    # Self-contained: plotly.js is inlined, nothing is fetched when the page opens.
    assert "CSL (training pass)" in html and len(html) > 1_000_000
    assert '<script src="http' not in html.replace("'", '"')


@pytest.mark.slow
def test_rerun_resumes_finished_cells_without_training(demo_bench, monkeypatch):
    before = json.loads((demo_bench / "results.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(runner, "train", no_training)
    assert main([*DEMO_ARGS, "--out", str(demo_bench)]) == 0
    after = json.loads((demo_bench / "results.json").read_text())
    assert after["settings"]["noise-0.1"]["methods"] == before["settings"]["noise-0.1"]["methods"]


@pytest.mark.slow
def test_rerun_trains_only_the_missing_cell(demo_bench, tmp_path, monkeypatch, single_thread):
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(demo_bench, out)
    (out / "cells" / "true-labels__seed-1.json").unlink()
    calls = []
    real_train = runner.train

    def counting_train(*args, **kwargs):
        calls.append(str(args[1]))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runner, "train", counting_train)
    assert main([*DEMO_ARGS, "--out", str(out)]) == 0
    assert len(calls) == 1 and "true-labels" in calls[0]


@pytest.mark.slow
def test_rerun_with_other_settings_refuses_to_mix_results(demo_bench, capsys):
    args = [*DEMO_ARGS, "--out", str(demo_bench)]
    args[args.index("--epochs") + 1] = "3"
    assert main(args) == 2
    assert "holds a result for other settings" in capsys.readouterr().err


def test_a_half_finished_training_is_continued_not_restarted(tmp_path, monkeypatch, single_thread):
    config = BenchConfig(data="demo", noise=(0.1,), duplicates=0, seeds=(1,), epochs=2, baselines="fast",
                         clean_at=())
    benchmark = runner.Benchmark(config, tmp_path / "out", quiet=True)
    setting = Setting("noise", 0.1)

    class StopAfterFirstEpoch:
        stop = False

        def on_start(self, info): pass
        def on_batch(self, epoch, batch, batches): pass
        def on_epoch(self, epoch, summary): self.stop = True
        def should_stop(self): return self.stop

    killed = runner.train(benchmark._train_config(1, setting, eval_pass=True, embeddings=True),
                          tmp_path / "out" / "runs" / "noise-0.1-seed1",
                          training_set=benchmark._training_set(1, setting), callbacks=StopAfterFirstEpoch())
    assert killed.stopped and killed.finished_epochs == 1
    resumed = []
    real_train = runner.train

    def recording_train(*args, **kwargs):
        resumed.append(kwargs.get("resume", False))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runner, "train", recording_train)
    benchmark.tasks = [t for t in benchmark.tasks if t.kind == "detect"]
    results = benchmark.run()
    assert resumed == [True]
    assert RunStore(tmp_path / "out" / "runs" / "noise-0.1-seed1").finished_epochs == 2
    assert results["settings"]["noise-0.1"]["methods"]["csl"]["auroc"]["mean"] > 0.5


@pytest.mark.slow
def test_report_only_writes_partial_results_without_training(demo_bench, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(demo_bench, out)
    (out / "cells" / "duplicates-4__seed-1__cleanlab.json").unlink()
    monkeypatch.setattr(runner, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert main([*DEMO_ARGS, "--out", str(out), "--report-only"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["missing_tasks"] == ["duplicates-4/seed-1/cleanlab"]
    assert "cleanlab" not in results["settings"]["duplicates-4"]["methods"]
    markdown = (out / "results.md").read_text()
    assert "**Incomplete:**" in markdown and "| duplicates-4/seed-1/cleanlab | not finished | |" in markdown


@pytest.mark.slow
def test_workers_sharing_an_output_folder_skip_a_task_another_one_holds(demo_bench, tmp_path, monkeypatch):
    import shutil
    import time

    out = tmp_path / "shared"
    shutil.copytree(demo_bench, out)
    (out / "cells" / "true-labels__seed-1.json").unlink()
    claim = out / "cells" / "true-labels__seed-1.claim"
    held = runner.lock_file(claim)  # another worker's claim: a flock held on another open file
    assert held.__enter__() is None
    monkeypatch.setattr(runner, "WORKER_POLL_SECONDS", 0.05)
    monkeypatch.setattr(runner, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    finished = json.loads((demo_bench / "cells" / "true-labels__seed-1.json").read_text())

    waited = []

    class Clock:
        """The runner's clock: the other worker finishes its task once the runner waits on it, not at a time."""

        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds):
            if not waited:
                (out / "cells" / "true-labels__seed-1.json").write_text(json.dumps(finished))
                held.__exit__(None, None, None)
            waited.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(runner, "time", Clock())
    assert main([*DEMO_ARGS, "--out", str(out)]) == 0
    assert waited   # it did find the task held by the other worker, and waited instead of training it
    assert json.loads((out / "results.json").read_text())["missing_tasks"] == []


def test_a_claim_left_by_a_dead_worker_is_taken_over(tmp_path):
    config = BenchConfig(data="demo", noise=(0.1,), duplicates=0, seeds=(1,), epochs=1, clean_at=())
    benchmark = runner.Benchmark(config, tmp_path, quiet=True)
    task = benchmark.tasks[0]
    claim = benchmark._cell_path(task.key).with_suffix(".claim")
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"pid": 2**22 + 12345, "host": __import__("socket").gethostname()}))
    with benchmark._claim(task) as claimed:
        assert claimed and json.loads(claim.read_text())["pid"] != 2**22 + 12345
        with benchmark._claim(task) as second:
            assert not second
    assert not claim.exists()
