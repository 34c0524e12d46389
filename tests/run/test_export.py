"""The cleaned label export: CSV columns and rows, dropped rows, ImageFolder tree, idempotence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.run.decisions import DecisionLog
from csl_core.run.export import CSV_COLUMNS, class_summary, cleaned_labels, export_run, write_imagefolder

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture()
def three_class_run(make_run):
    """``three_class_run(path, num_samples=9, epochs=3, files_root=None)``: a finished run of cat, dog and fox,
    sample i at CSL rank ``num_samples - i``, each suggested the next class; with ``files_root``, a file source
    on disk (names repeated inside a class on purpose)."""
    def make(path, *, num_samples=9, epochs=3, files_root=None):
        labels = np.arange(num_samples) % len(CLASSES)
        paths = None
        if files_root is not None:
            paths = []
            for i, c in enumerate(labels):
                folder = files_root / CLASSES[c]
                folder.mkdir(parents=True, exist_ok=True)
                file = folder / f"img{i % 2}.png"
                if file.exists():
                    file = folder / f"img{i}.png"
                Image.new("L", (4, 4), color=i * 20).save(file)
                paths.append(str(file))
        rng = np.random.default_rng(0)
        return make_run(path, n=num_samples, classes=CLASSES, labels=labels, paths=paths, epochs=epochs, config={},
                        loss=lambda epoch: (np.arange(num_samples) + 1.0) / num_samples,
                        epoch_record=lambda epoch: {"margin": rng.normal(size=num_samples).astype(np.float32),
                                                    "p_given": np.full(num_samples, 0.8, np.float32),
                                                    "p_max": np.full(num_samples, 0.9, np.float32)},
                        probabilities=np.eye(len(CLASSES), dtype=np.float32)[(labels + 1) % 3])
    return make


def test_cleaned_labels_columns_and_rows(tmp_path, three_class_run):
    store = three_class_run(tmp_path / "run")
    log = DecisionLog(store.path)
    log.record([0], "relabel", label=2)
    log.record([1], "drop")
    log.record([2], "keep")
    scores = store.scores()
    effective = log.effective(len(scores), scores["label"])
    table = cleaned_labels(scores, effective, CLASSES)
    assert list(table.columns) == CSV_COLUMNS
    assert table.loc[0].to_dict() == {"id_or_path": "s0", "original_label": "cat", "label": "fox",
                                      "action": "relabel", "csl": pytest.approx(3 / 9), "csl_rank": 9,
                                      "suggested_label": "dog", "suggested_confidence": 1.0,
                                      "p_wrong": round(float(scores.at[0, "p_wrong"]), 4)}
    assert table.loc[1, "action"] == "drop" and table.loc[3, "action"] == "undecided"
    without = cleaned_labels(scores, effective, CLASSES, include_dropped=False)
    assert len(without) == 8 and 1 not in without.index


def test_class_summary():
    effective = pd.DataFrame({"action": ["relabel", "drop", "keep", "undecided"], "label": [1, 1, 2, 0]})
    summary = class_summary(np.array([0, 1, 2, 0]), effective, ["a", "b", "c"]).set_index("class")
    assert summary.loc["a"].to_dict() == {"samples": 2, "kept": 0, "relabeled": 1, "dropped": 0,
                                          "undecided": 1, "after_cleaning": 1}
    assert summary.loc["b", "after_cleaning"] == 1 and summary.loc["b", "dropped"] == 1
    assert summary.loc["all", "samples"] == 4


def test_export_is_atomic_and_idempotent(tmp_path, three_class_run):
    store = three_class_run(tmp_path / "run")
    DecisionLog(store.path).record([4, 5], "drop")
    first = export_run(store.path, include_dropped=False)
    content = first.csv_path.read_bytes()
    second = export_run(store.path, include_dropped=False)
    assert second.csv_path.read_bytes() == content
    assert [p.name for p in first.csv_path.parent.iterdir()] == ["cleaned_labels.csv"]   # no temp files left
    back = pd.read_csv(first.csv_path)
    assert len(back) == 7 and not back["id_or_path"].isin(["s4", "s5"]).any()
    assert first.summary.set_index("class").loc["all", "dropped"] == 2


def test_imagefolder_tree(tmp_path, three_class_run):
    store = three_class_run(tmp_path / "run", files_root=tmp_path / "images")
    log = DecisionLog(store.path)
    log.record([0], "relabel", label=1)      # cat -> dog
    log.record([4], "drop")                  # a dog
    result = export_run(store.path, imagefolder=True)
    tree = result.tree_path
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.png"))
    assert len(files) == 8
    assert sum(result.links.values()) == 8
    assert len([f for f in files if f.startswith("dog/")]) == 3     # 3 dogs - 1 dropped + 1 relabeled
    target = (tree / "dog").iterdir()
    assert all(p.resolve().is_file() for p in target)
    export_run(store.path, imagefolder=True)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.png")) == files
    assert [p.name for p in tree.parent.iterdir() if p.name.startswith(".")] == []


def test_imagefolder_needs_files(tmp_path, three_class_run):
    store = three_class_run(tmp_path / "run")
    with pytest.raises(ValueError, match="not files on disk"):
        export_run(store.path, imagefolder=True)


def test_imagefolder_falls_back_to_copies(tmp_path, monkeypatch):
    source = tmp_path / "a.png"
    Image.new("L", (2, 2)).save(source)

    def refuse(*args, **kwargs):
        raise OSError("links not supported here")

    monkeypatch.setattr("os.symlink", refuse)
    monkeypatch.setattr("os.link", refuse)
    made = write_imagefolder(np.array([str(source)]), np.array(["T-shirt/top"]), tmp_path / "tree")
    assert made == {"symlink": 0, "hardlink": 0, "copy": 1}
    assert (tmp_path / "tree" / "T-shirt_top" / "a.png").read_bytes() == source.read_bytes()
