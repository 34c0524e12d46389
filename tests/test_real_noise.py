"""The real-noise protocol on a few dozen images made here: a noisy column trained through csv:, scored
against a trusted column; confident learning and the cleaning retrains on the same recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from csl_core.bench.real_noise import RealNoiseBenchmark, RealNoiseConfig
from csl_core.cli import main
from csl_core.data import DataError
from csl_core.run.store import RunStore

CLASSES = ("cat", "dog", "frog")


def _make(tmp_path, n: int = 48):
    """Images whose colour says the class; a noisy column with 6 wrong labels, a clean test file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows, test_rows = ["path,clean_label,noisy_label"], ["path,label"]
    wrong = set(rng.choice(n, size=6, replace=False).tolist())
    for i in range(n):
        c = i % 3
        pixels = rng.integers(0, 60, size=(8, 8, 3)).astype(np.uint8)
        pixels[..., c] += 180
        Image.fromarray(pixels).save(root / "train" / f"{i:03d}.png")
        noisy = CLASSES[(c + 1) % 3] if i in wrong else CLASSES[c]
        rows.append(f"train/{i:03d}.png,{CLASSES[c]},{noisy}")
        if i < 12:
            Image.fromarray(pixels).save(root / "test" / f"{i:03d}.png")
            test_rows.append(f"test/{i:03d}.png,{CLASSES[c]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "test.csv").write_text("\n".join(test_rows) + "\n")
    return root, sorted(wrong)


def test_a_noisy_column_is_trained_through_csv_and_scored_against_the_trusted_one(tmp_path, capsys):
    root, wrong = _make(tmp_path)
    out = tmp_path / "bench"
    assert main(["bench-real", "--labels", str(root / "labels.csv"), "--root", str(root),
                 "--columns", "noisy_label", "--seeds", "1", "--epochs", "2", "--no-recipe", "--model", "small-cnn",
                 "--test", str(root / "test.csv"), "--cleanlab", "--folds", "2", "--clean",
                 "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    (cell,) = results["cells"]
    assert cell["epochs"] == 2 and cell["augment"] is False  # a budget of its own: no augmentation
    assert cell["positives"] == len(wrong) and cell["num_samples"] == 48
    assert {"csl", "final_loss", "aum", "knn_disagreement", "fused", "cleanlab"} <= set(cell["methods"])
    assert all(0 <= m["auroc"] <= 1 for m in cell["methods"].values())
    assert set(cell["cleaning"]) >= {"noisy", "drop", "relabel", "true"} and cell["test_accuracy"] is not None
    store = RunStore(cell["run"])
    assert store.meta["source"].startswith("csv:") and store.meta["model"] == "small-cnn"
    samples = store.samples()
    assert sorted(samples.index[samples["is_mislabeled"]]) == wrong  # the trusted column is the run's truth
    assert (out / "labels" / "noisy_label.csv").read_text().startswith("path,label\n")
    assert "noisy_label, 2 epochs, no augmentation" in (out / "results.md").read_text()


def test_the_recipe_cell_trains_with_the_source_recipe_and_reruns_reuse_it(tmp_path):
    root, _ = _make(tmp_path, n=24)
    out = tmp_path / "bench"
    config = RealNoiseConfig(labels=str(root / "labels.csv"), columns=("noisy_label",))
    (cell,) = RealNoiseBenchmark(config, out, quiet=True).run()["cells"]
    assert (cell["epochs"], cell["model"], cell["augment"]) == (20, "airbench", None)
    meta = out / "runs" / "noisy_label-e20-seed1" / "meta.json"
    mtime = meta.stat().st_mtime_ns
    RealNoiseBenchmark(config, out, quiet=True).run()
    assert meta.stat().st_mtime_ns == mtime  # the finished run is reused, not trained again


def test_a_missing_column_is_named(tmp_path):
    root, _ = _make(tmp_path, n=6)
    with pytest.raises(DataError, match="aggre_label"):
        RealNoiseBenchmark(RealNoiseConfig(labels=str(root / "labels.csv"), columns=("aggre_label",)), tmp_path / "o")
