"""``import`` and ``export``: another framework's losses become a run; a run's scores leave in the formats
cleanlab and FiftyOne users load; export then import gives the same scores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from csl_core.analysis.scores import SCORES, default_score, suspicion
from csl_core.cli import main
from csl_core.engine.tracker import CSLTracker
from csl_core.run.decisions import DecisionLog
from csl_core.run.interop import ISSUE_COLUMNS, export_interop, fields_from_probabilities, import_run
from csl_core.run.store import RunStore

CLASSES = ["cat", "dog", "fox"]
ROOT = Path(__file__).resolve().parents[2]


def photo_folder(root, n: int = 12) -> pd.DataFrame:
    """``n`` small PNGs and a ``path,label`` table with paths relative to ``root``."""
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (6, 6), (i * 9, 0, 0)).save(root / "img" / f"{i}.png")
        rows.append((f"img/{i}.png", CLASSES[i % 3]))
    table = pd.DataFrame(rows, columns=["path", "label"])
    table.to_csv(root / "labels.csv", index=False)
    return table


def test_export_then_import_gives_identical_scores(demo_run, tmp_path, capsys):
    exported = tmp_path / "exported"
    assert main(["export", str(demo_run), "--format", "arrays", "--out", str(exported)]) == 0
    assert (exported / "arrays" / "loss.npy").is_file() and (exported / "images.npy").is_file()
    assert main(["import", "--from", str(exported), "--out", str(tmp_path / "imported")]) == 0
    assert "AUROC      csl" in capsys.readouterr().out
    original, imported = RunStore(demo_run), RunStore(tmp_path / "imported")
    a, b = original.scores(), imported.scores()
    score_columns = [*SCORES.keys() - {"eval_csl"}, "suggested_label", "suggested_confidence", "csl_rank",
                     "is_mislabeled", "label", "class_name", "sample_id"]
    for column in score_columns:
        pd.testing.assert_series_equal(a[column], b[column], check_dtype=False, obj=column)
    assert imported.classes == original.classes
    assert np.array_equal(np.load(imported.path / "images.npy"), np.load(exported / "images.npy"))
    assert np.array_equal(np.load(imported.path / "embeddings.npy"), np.load(demo_run / "embeddings.npy"))


def test_losses_from_a_long_csv_and_files_on_disk(tmp_path):
    table = photo_folder(tmp_path)
    rng = np.random.default_rng(0)
    loss = rng.random((len(table), 4))
    long = pd.DataFrame([(i, e, loss[i, e]) for e in range(4) for i in range(len(table))],
                        columns=["index", "epoch", "loss"]).sample(frac=1, random_state=0)
    long[(long["index"] != 5) | (long["epoch"] != 2)].to_csv(tmp_path / "gap.csv", index=False)
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "gap.csv"),
                 "--out", str(tmp_path / "run")]) == 2      # a gap would lower the sample's CSL: refused, named
    assert not (tmp_path / "run").exists()
    long.to_csv(tmp_path / "l.csv", index=False)
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "l.csv"),
                 "--out", str(tmp_path / "run")]) == 0
    store = RunStore(tmp_path / "run")
    expected = loss.copy()
    np.testing.assert_allclose(store.array("loss"), expected.astype(np.float32))
    np.testing.assert_allclose(store.csl(), np.sum(expected.astype(np.float32), axis=1), rtol=1e-6)
    assert store.samples()["path"].iloc[4] == str(tmp_path / "img" / "4.png")
    assert store.classes == CLASSES and store.meta["fields"] == ["loss"]
    # the same losses as a wide Parquet table (one column per epoch) give the same run
    pd.DataFrame(expected, columns=[f"epoch_{e}" for e in range(4)]).to_parquet(tmp_path / "l.parquet")
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "l.parquet"),
                 "--out", str(tmp_path / "run2")]) == 0
    np.testing.assert_array_equal(RunStore(tmp_path / "run2").csl(), store.csl())


def test_per_epoch_probabilities_give_the_trackers_fields(tmp_path):
    photo_folder(tmp_path)
    labels = np.arange(12) % 3
    logits = torch.randn(12, 5, 3, generator=torch.Generator().manual_seed(0))      # (N, epochs, C)
    tracker = CSLTracker(12, 3)
    for epoch in range(5):
        tracker.update(torch.arange(12), logits[:, epoch], torch.as_tensor(labels))
        tracker.end_epoch()
    history = tracker.history()
    np.save(tmp_path / "loss.npy", history["loss"].T)                                # (epochs, N): transposed
    np.save(tmp_path / "p.npy", logits.softmax(dim=2).numpy().transpose(1, 0, 2))    # (epochs, N, C)
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--probabilities", str(tmp_path / "p.npy"), "--classes", ",".join(CLASSES),
                 "--out", str(tmp_path / "run")]) == 0
    store = RunStore(tmp_path / "run")
    for field in ("margin", "p_given", "p_max"):
        np.testing.assert_allclose(store.array(field), history[field], rtol=1e-4, atol=1e-5, err_msg=field)
    assert np.array_equal(store.array("correct"), history["correct"])
    np.testing.assert_allclose(store.probabilities(), tracker.mean_probabilities(), rtol=1e-5)


def test_the_tracker_and_import_derive_the_fields_by_one_formula():
    """The same logits through the tracker, and their softmax through ``import``, give identical correctness
    and margins: a tie at the top (the first class wins in both), a near-certain and a misclassified sample."""
    n, k = 64, 5
    logits = torch.randn(n, k, generator=torch.Generator().manual_seed(1)) * 4
    labels = torch.arange(n) % k
    logits[0, :2] = 3.0                                   # given class 0 ties class 1 at the top
    logits[1] = torch.tensor([-30.0, 30.0, -30.0, -30.0, -30.0])   # given class 1, near-certain
    logits[2] = torch.tensor([9.0, -9.0, 0.0, 0.0, 0.0])     # given class 2, confidently wrong
    tracker = CSLTracker(n, k)
    tracker.update(torch.arange(n), logits, labels)
    record = tracker.end_epoch()
    derived = fields_from_probabilities(logits.double().softmax(dim=1).numpy()[:, None, :], labels.numpy())
    np.testing.assert_array_equal(derived["correct"][:, 0], record["correct"])
    np.testing.assert_array_equal(derived["margin"][:, 0], record["margin"])
    for field in ("p_given", "p_max"):
        np.testing.assert_allclose(derived[field][:, 0], record[field], rtol=1e-6, err_msg=field)
    assert record["correct"][:3].tolist() == [True, True, False]
    assert record["margin"][0] == 0 and record["margin"][1] == 60 and record["margin"][2] == -9


def test_import_from_an_exported_folder_takes_explicit_inputs_over_the_folders(demo_run, tmp_path):
    exported = tmp_path / "exported"
    export_interop(demo_run, exported, label_issue_table=False, arrays=True)
    original = RunStore(demo_run)
    same = import_run(tmp_path / "same", from_dir=exported)
    for field in original.meta["fields"]:
        np.testing.assert_array_equal(same.array(field), original.array(field), err_msg=field)
    assert same.classes == original.classes
    zeros = np.zeros_like(original.array("margin"))
    np.save(tmp_path / "margin.npy", zeros)
    named = [f"class {i}" for i in range(len(original.classes))]
    changed = import_run(tmp_path / "changed", from_dir=exported, array_files={"margin": tmp_path / "margin.npy"},
                         classes=named)
    np.testing.assert_array_equal(changed.array("margin"), zeros)
    np.testing.assert_array_equal(changed.array("loss"), original.array("loss"))
    assert changed.classes == named
    with pytest.raises(ValueError, match="samples.csv"):
        import_run(tmp_path / "none", from_dir=tmp_path)


def test_shape_mismatches_name_both_shapes_and_files(tmp_path, capsys):
    photo_folder(tmp_path)
    np.save(tmp_path / "loss.npy", np.zeros((11, 3)))
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "loss.npy" in err and "(11, 3)" in err and "(12, epochs)" in err
    np.save(tmp_path / "loss.npy", np.zeros((12, 3)))
    np.save(tmp_path / "margin.npy", np.zeros((12, 4)))
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--array", f"margin={tmp_path / 'margin.npy'}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "margin.npy" in err and "(12, 4)" in err and "(12, 3)" in err
    np.save(tmp_path / "p.npy", np.full((12, 4), 0.25))
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--probabilities", str(tmp_path / "p.npy"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "p.npy" in err and "4 classes" in err and "labels.csv has 3 classes" in err
    assert not (tmp_path / "run" / "meta.json").exists()


def test_bad_label_files_say_which_line(tmp_path, capsys):
    photo_folder(tmp_path)
    np.save(tmp_path / "loss.npy", np.zeros((12, 2)))
    table = pd.read_csv(tmp_path / "labels.csv")
    table.loc[3, "label"] = "7"
    table.to_csv(tmp_path / "labels.csv", index=False)
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "labels.csv, line 5" in capsys.readouterr().err


def test_export_writes_cleanlab_columns_and_a_fiftyone_file(demo_run, tmp_path, copy_demo):
    run = tmp_path / "run"
    copy_demo(run)
    scores = RunStore(run).scores()
    ranking = suspicion(scores, default_score(scores))   # the default ranking (fused), not CSL alone
    top = int(np.argmax(ranking))
    outweighs = scores["suggested_confidence"].to_numpy() > scores["label_evidence"].to_numpy()
    agreeing = int(np.flatnonzero(~outweighs)[0])      # the evidence backs its given label
    DecisionLog(run).record([agreeing], "drop")
    DecisionLog(run).record([top], "keep")
    assert main(["export", str(run), "--format", "cleanlab,fiftyone", "--out", str(tmp_path / "out")]) == 0
    issues = pd.read_csv(tmp_path / "out" / "label_issues.csv", keep_default_na=False, dtype={"given_label": str,
                                                                                              "predicted_label": str})
    assert list(issues.columns) == ISSUE_COLUMNS and len(issues) == len(scores)
    assert issues.loc[top, "label_score"] == 0.0 and not issues.loc[top, "is_label_issue"]   # kept by a person
    assert issues.loc[agreeing, "is_label_issue"]                                              # dropped by a person
    undecided = issues["action"] == "undecided"
    # undecided: an issue where the suggestion outweighs the given label (then it is the predicted label)
    assert np.array_equal(issues["is_label_issue"][undecided], outweighs[undecided.to_numpy()])
    names = np.asarray(RunStore(run).classes, dtype=object)
    predicted = np.where(outweighs, scores["suggested_label"], scores["label"])
    assert (issues["predicted_label"].to_numpy() == names[predicted]).all()
    assert 0 < outweighs.sum() < len(scores) / 4
    # low label_score = high in the default ranking, as cleanlab users sort
    assert default_score(scores) == "fused"
    assert np.all(np.diff(ranking[np.argsort(issues["label_score"].to_numpy(), kind="stable")]) <= 1e-12)
    fields = json.loads((tmp_path / "out" / "fiftyone_fields.json").read_text())
    first = issues["id_or_path"].iloc[0]
    assert set(fields) == set(ISSUE_COLUMNS) - {"id_or_path"}
    assert fields["csl"][first] == pytest.approx(issues["csl"].iloc[0], rel=1e-5)
    assert len(fields["is_label_issue"]) == len(scores)


def test_unknown_export_format_lists_the_known_ones(demo_run, capsys):
    assert main(["export", str(demo_run), "--format", "coco"]) == 2
    assert "known: csv, imagefolder, cleanlab, fiftyone, arrays" in capsys.readouterr().err


def test_the_export_page_offers_both_files(demo_run):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "export.py"), default_timeout=120)
    at.session_state["run_path"] = str(demo_run)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [element.proto.label for element in at.get("download_button")]
    assert "label_issues.csv" in labels and "FiftyOne fields" in labels


def test_export_cli_writes_the_cleaned_csv_and_tree_of_an_imported_run(tmp_path):
    table = photo_folder(tmp_path)
    np.save(tmp_path / "loss.npy", np.random.default_rng(0).random((len(table), 3)))
    assert main(["import", "--samples", str(tmp_path / "labels.csv"), "--losses", str(tmp_path / "loss.npy"),
                 "--out", str(tmp_path / "run")]) == 0
    DecisionLog(tmp_path / "run").record([0], "drop")
    assert main(["export", str(tmp_path / "run"), "--format", "csv,imagefolder", "--no-dropped"]) == 0
    cleaned = pd.read_csv(tmp_path / "run" / "export" / "cleaned_labels.csv")
    assert len(cleaned) == len(table) - 1 and str(tmp_path / "img" / "0.png") not in set(cleaned["id_or_path"])
    tree = tmp_path / "run" / "export" / "imagefolder"
    assert sorted(p.parent.name for p in tree.rglob("*.png")) == sorted(table["label"].iloc[1:])
