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
    assert cell["test_accuracy"] is not None
    cleaning = cell["cleaning"]
    assert set(cleaning) == {"noisy", "trusted", "suggested", "outweighs", "drop"}
    assert cleaning["noisy"] == cell["test_accuracy"] and 0 <= cleaning["trusted"] <= 1
    scores = RunStore(cell["run"]).scores()
    outweighs = scores["suggested_confidence"] > scores["label_evidence"]
    assert cleaning["outweighs"]["budget"] == outweighs.sum()  # a per-sample rule, not the count
    for name in ("suggested", "drop"):      # each cleaning retrained on its own plan, within the count
        assert cleaning[name]["budget"] == cell["estimated_noise"]
        assert cleaning[name]["relabel"] + cleaning[name]["drop"] == cleaning[name]["budget"]
        assert RunStore(out / "runs" / cleaning[name]["run"]).num_samples == 48 - cleaning[name]["drop"]
    assert cleaning["drop"]["relabel"] == 0
    # the trusted labels' run is named after the trusted column, so that every noisy column shares it
    assert RunStore(out / "runs" / "clean_label-e2-noaug-small-cnn-seed1").meta["completed"]
    suggestion = cell["suggestion"]
    assert suggestion["top_wrong"] >= 0 and 0 <= suggestion["all"] <= 1
    store = RunStore(cell["run"])
    assert store.meta["source"].startswith("csv:") and store.meta["model"] == "small-cnn"
    samples = store.samples()
    assert sorted(samples.index[samples["is_mislabeled"]]) == wrong  # the trusted column is the run's truth
    assert (out / "labels" / "noisy_label.csv").read_text().startswith("path,label\n")
    report = (out / "results.md").read_text()
    assert "noisy_label, 2 epochs, no augmentation" in report and "| suggested |" in report


@pytest.mark.slow
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


def test_recipe_variants_get_runs_of_their_own_and_the_widened_model_is_rebuilt_for_cleanlab(tmp_path):
    root, _ = _make(tmp_path, n=24)
    out = tmp_path / "bench"
    base = ["bench-real", "--labels", str(root / "labels.csv"), "--columns", "noisy_label", "--recipe-epochs", "2",
            "--out", str(out), "--quiet"]
    assert main(base + ["--model", "small-cnn-x0.5", "--lr", "0.1", "--cleanlab", "--folds", "2"]) == 0
    (wide,) = json.loads((out / "results.json").read_text())["cells"]
    assert (wide["epochs"], wide["model"], wide["lr"], wide["augment"]) == (2, "small-cnn-x0.5", 0.1, None)
    meta = out / "runs" / "noisy_label-e2-small-cnn-x0.5-lr0.1-seed1" / "meta.json"
    mtime = meta.stat().st_mtime_ns
    # the folds' networks are rebuilt at the run's width to predict the held-out rows
    assert 0 <= wide["methods"]["cleanlab"]["auroc"] <= 1
    assert main(base + ["--model", "small-cnn", "--batch-size", "8"]) == 0  # another variant in the same --out
    (plain,) = json.loads((out / "results.json").read_text())["cells"]
    assert (plain["model"], plain["lr"], plain["batch_size"]) == ("small-cnn", 0.2, 8)  # lr: the csv recipe's
    assert meta.stat().st_mtime_ns == mtime and (out / "runs" / "noisy_label-e2-small-cnn-b8-seed1").is_dir()


@pytest.mark.slow
def test_the_recipe_sweep_runs_each_variant_once_and_tables_them(tmp_path):
    from scripts.sweep_recipe import main as sweep_main

    root, _ = _make(tmp_path, n=24)
    out = tmp_path / "sweep"
    args = ["--labels", str(root / "labels.csv"), "--column", "noisy_label", "--only", "epochs10,no-augment",
            "--out", str(out), "--quiet"]
    assert sweep_main(args) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["variant"], r["epochs"], r["augment"]) for r in rows] == [("epochs10", 10, None),
                                                                        ("no-augment", 20, False)]
    assert all(0 <= r["auroc"]["fused"] <= 1 and r["seconds_per_epoch"] > 0 for r in rows)
    assert "| epochs10 | airbench | 0.2 | 256 | 10 | yes |" in (out / "sweep.md").read_text()
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["noisy_label-e10-seed1", "noisy_label-e20-noaug-seed1"]
    with pytest.raises(SystemExit):  # an unknown variant is refused before anything trains
        sweep_main(args[:-4] + ["--only", "lr9", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_two_seeds_are_summarised_per_score_with_their_range(tmp_path):
    root, _ = _make(tmp_path, n=24)
    out = tmp_path / "bench"
    assert main(["bench-real", "--labels", str(root / "labels.csv"), "--columns", "noisy_label", "--seeds", "1,2",
                 "--recipe-epochs", "2", "--model", "small-cnn", "--out", str(out), "--quiet"]) == 0
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [c["seed"] for c in cells] == [1, 2]
    from csl_core.bench.real_noise import summarise_seeds

    rows = {r["method"]: r for r in summarise_seeds(cells)}
    csl = [c["methods"]["csl"]["auroc"] for c in cells]
    assert rows["csl"]["seeds"] == [1, 2] and rows["csl"]["auroc"] == pytest.approx(sum(csl) / 2)
    assert (rows["csl"]["auroc_min"], rows["csl"]["auroc_max"]) == (min(csl), max(csl))
    text = (out / "results.md").read_text()
    assert "## Over seeds" in text and f"| noisy_label | 2 | CSL (training pass) | 2 | {sum(csl) / 2:.4f} |" in text


def test_a_model_name_that_is_a_path_is_refused_before_anything_is_written(tmp_path):
    root, _ = _make(tmp_path, n=6)
    with pytest.raises(ValueError, match="unknown model"):
        RealNoiseBenchmark(RealNoiseConfig(labels=str(root / "labels.csv"), columns=("noisy_label",),
                                           model="../../elsewhere"), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cleanings_chooses_the_retrains_and_the_trusted_run_comes_first(tmp_path):
    root, _ = _make(tmp_path, n=24)
    out = tmp_path / "bench"
    base = ["bench-real", "--labels", str(root / "labels.csv"), "--columns", "noisy_label", "--epochs", "2",
            "--no-recipe", "--model", "small-cnn", "--test", str(root / "test.csv"), "--clean", "--out", str(out),
            "--quiet"]
    assert main(base + ["--cleanings", "drop"]) == 0
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    assert set(cell["cleaning"]) == {"noisy", "trusted", "drop"}  # no suggested retrain asked, none trained
    runs = out / "runs"
    trusted = runs / "clean_label-e2-noaug-small-cnn-seed1" / "meta.json"
    dropped = runs / cell["cleaning"]["drop"]["run"] / "meta.json"
    assert trusted.stat().st_mtime_ns < dropped.stat().st_mtime_ns  # trusted first: every share needs it
    assert not any("clean-suggested" in p.name for p in runs.iterdir())
    mtime = dropped.stat().st_mtime_ns
    assert main(base + ["--cleanings", "suggested,drop"]) == 0  # the rest later; finished retrains reused
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    assert set(cell["cleaning"]) == {"noisy", "trusted", "suggested", "drop"}
    assert dropped.stat().st_mtime_ns == mtime


def test_an_unknown_cleaning_is_named_on_the_command_line(tmp_path, capsys):
    root, _ = _make(tmp_path, n=6)
    assert main(["bench-real", "--labels", str(root / "labels.csv"), "--columns", "noisy_label", "--clean",
                 "--cleanings", "relabel-all", "--out", str(tmp_path / "o"), "--quiet"]) != 0
    assert "relabel-all" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_an_unknown_cleaning_is_refused_with_the_ones_there_are(tmp_path):
    root, _ = _make(tmp_path, n=6)
    with pytest.raises(ValueError, match="suggested, outweighs, drop"):
        RealNoiseConfig(labels=str(root / "labels.csv"), cleanings=("relabel-all",))
