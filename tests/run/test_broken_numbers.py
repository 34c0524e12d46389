"""Round two of the red-team corpus, numbers: nothing is ranked on broken numbers. Damage that keeps a
file's size, NaN, infinite or negative losses, and imported tables that would silently change a sample's
CSL are refused with the file and sample named. Each test names the issue-20 finding it holds."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch

from csl_core.cli import main
from csl_core.config import TrainConfig
from csl_core.engine.tracker import CSLTracker
from csl_core.engine.train import train
from csl_core.run.interop import import_run
from csl_core.run.store import RunError, RunStore
from tests.support import ROOT

# ---------------------------------------------------------------- 6. damage that keeps an array's size

def test_a_zeroed_loss_column_is_found_before_resume(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(data="demo", epochs=2, subset=300, device="cpu", compute_embeddings=False), out)
    store = RunStore(out)
    assert store.problems(deep=True) == []
    loss = out / "arrays" / "loss.npy"
    size = loss.stat().st_size
    with open(loss, "r+b") as f:                          # zero the last rows of every column: same size
        f.seek(size - 4 * 2 * 50)
        f.write(b"\0" * 4 * 2 * 50)
    assert loss.stat().st_size == size
    assert any("loss.npy is damaged" in p and "checksums" in p for p in store.problems(deep=True))
    with pytest.raises(RunError, match="cannot be resumed.*loss.npy"):
        train(TrainConfig(data="demo", epochs=3, subset=300, device="cpu"), out, resume=True)


# ---------------------------------------------------------------- 7. the tracker refuses broken losses

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_the_tracker_refuses_a_loss_that_is_not_finite_and_non_negative(bad):
    tracker = CSLTracker(4, 2)
    logits = torch.zeros(4, 2)
    losses = torch.tensor([0.3, bad, 0.2, 0.1])
    tracker.update(torch.arange(4), logits, torch.zeros(4, dtype=torch.long), losses)
    with pytest.raises(ValueError, match="sample 1 has loss"):
        tracker.end_epoch()


def test_an_unseen_sample_is_still_allowed_its_nan():
    tracker = CSLTracker(4, 2)
    tracker.update(torch.arange(3), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.ones(3))
    assert np.isnan(tracker.end_epoch()["loss"][3])       # not seen this epoch: NaN, and no error


def test_an_index_outside_the_samples_writes_nothing():
    tracker = CSLTracker(4, 2)
    tracker.update(torch.arange(4), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.full((4,), 0.7))
    before = {k: v.clone() for k, v in tracker._buffers.items()}
    with pytest.raises(IndexError, match="sample index -1"):
        tracker.update(torch.tensor([0, -1]), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.ones(2))
    assert all(torch.equal(before[k], tracker._buffers[k]) for k in before)   # sample 3 not overwritten


# ---------------------------------------------------------------- 7 and 10. import checks what train checks

def _samples(tmp_path, labels, ids=None):
    ids = ids or [f"s{i}" for i in range(len(labels))]
    file = tmp_path / "samples.csv"
    pd.DataFrame({"sample_id": ids, "label": labels}).to_csv(file, index=False)
    return file


def _npy(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return tmp_path / name


def _import_case(kind, tmp_path):
    """(kwargs for import_run, fragment of the error) for each bad import of the issue."""
    labels = ["cat", "dog"] * 3
    good = np.full((6, 3), 0.5, np.float32)
    samples = _samples(tmp_path, labels)
    base = {"samples_file": samples, "losses_file": _npy(tmp_path, "loss.npy", good)}
    if kind in ("nan-loss", "negative-loss", "inf-loss"):
        value = {"nan-loss": np.nan, "negative-loss": -1.0, "inf-loss": np.inf}[kind]
        loss = good.copy()
        loss[4, 1] = value
        return {**base, "losses_file": _npy(tmp_path, "bad.npy", loss)}, "sample 4 has loss"
    if kind == "gap-in-long-table":
        rows = [(i, e, 0.5) for i in range(6) for e in range(3) if (i, e) != (2, 1)]
        pd.DataFrame(rows, columns=["index", "epoch", "loss"]).to_csv(tmp_path / "long.csv", index=False)
        return {**base, "losses_file": tmp_path / "long.csv"}, "sample 2 has no row for epoch 1"
    if kind == "square-array":
        return {**base, "losses_file": _npy(tmp_path, "sq.npy", np.full((6, 6), 0.5, np.float32))}, "--layout"
    if kind == "fractional-correct":
        correct = np.ones((6, 3))
        correct[1, 2] = 0.3
        return {**base, "array_files": {"correct": _npy(tmp_path, "c.npy", correct)}}, "sample 1 in epoch 3 is 0.3"
    if kind in ("nan-probability", "negative-probability"):
        p = np.full((6, 2), 0.5)
        p[3, 0] = np.nan if kind == "nan-probability" else -0.2
        return {**base, "probabilities_file": _npy(tmp_path, "p.npy", p)}, "probability of sample 3"
    if kind == "duplicate-ids":
        return {**base, "samples_file": _samples(tmp_path, labels, ["a", "b", "c", "a", "e", "f"])}, "'a' appears"
    if kind == "duplicate-paths":
        file = tmp_path / "paths.csv"
        pd.DataFrame({"path": ["x.png", "y.png", "./x.png", "z.png", "w.png", "v.png"], "label": labels}).to_csv(
            file, index=False)
        return {**base, "samples_file": file}, "appears more than once"
    if kind == "labels-differ-in-case":
        return {**base, "samples_file": _samples(tmp_path, ["Bag", "bag"] * 3)}, "differ only in case"
    if kind == "newline-in-class":
        return {**base, "samples_file": _samples(tmp_path, ["a\nb", "c"] * 3)}, "line break"
    if kind == "repeated-classes":
        return {**base, "classes": ["cat", "dog", "cat"]}, "is repeated"
    if kind == "one-class":
        return {**base, "samples_file": _samples(tmp_path, ["cat"] * 6)}, "at least two classes"
    if kind == "huge-npy-header":
        file = tmp_path / "huge.npy"
        header = {"descr": "<f4", "fortran_order": False, "shape": (6, 10**12)}
        with open(file, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            f.write(b"\0" * 64)
        return {**base, "losses_file": file}, "header declares shape"
    raise AssertionError(kind)


IMPORT_KINDS = ["nan-loss", "negative-loss", "inf-loss", "gap-in-long-table", "square-array", "fractional-correct",
                "nan-probability", "negative-probability", "duplicate-ids", "duplicate-paths",
                "labels-differ-in-case", "newline-in-class", "repeated-classes", "one-class", "huge-npy-header"]


@pytest.mark.parametrize("kind", IMPORT_KINDS)
def test_import_refuses_what_train_refuses_and_writes_nothing(kind, tmp_path):
    kwargs, fragment = _import_case(kind, tmp_path)
    with pytest.raises(ValueError) as caught:
        import_run(tmp_path / "run", **kwargs)
    assert fragment in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_square_array_reads_as_the_layout_says(tmp_path):
    loss = np.arange(36, dtype=np.float32).reshape(6, 6) / 10
    kwargs = {"samples_file": _samples(tmp_path, ["cat", "dog"] * 3), "losses_file": _npy(tmp_path, "sq.npy", loss)}
    store = import_run(tmp_path / "a", layout="epochs-samples", **kwargs)
    np.testing.assert_allclose(store.array("loss"), loss.T)
    assert main(["import", "--samples", str(kwargs["samples_file"]), "--losses", str(kwargs["losses_file"]),
                 "--layout", "samples-epochs", "--out", str(tmp_path / "b")]) == 0
    np.testing.assert_allclose(RunStore(tmp_path / "b").array("loss"), loss)


def test_a_one_class_training_is_refused_before_its_folder_exists(tmp_path):
    from tests.support.files import folder_of_classes

    folder_of_classes(tmp_path / "r", classes=("only",), per_class=4)
    with pytest.raises(Exception, match="at least two classes"):
        train(TrainConfig(data=f"imagefolder:{tmp_path / 'r'}", epochs=1, device="cpu", image_size=8),
              tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 11. Lightning resumes its own run

@pytest.mark.slow
def test_lightning_fit_from_a_checkpoint_continues_the_run(tmp_path):
    pytest.importorskip("pytorch_lightning")
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    from lightning_demo import DigitsModule, loader

    from csl_core.data import build_training_set
    from csl_core.integrations.lightning import CSLCallback, pl

    ts = build_training_set("demo", seed=0, subset=300)
    dataset = ts.dataset()

    def fit(epochs, ckpt=None):
        torch.manual_seed(0)
        callback = CSLCallback(tmp_path / "run", classes=ts.classes, samples=ts.samples,
                               images=ts.source.images[ts.image_index])
        keep = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback, keep], logger=False, accelerator="cpu",
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(DigitsModule(ts.source.channels, len(ts.classes)), loader(dataset, batch_size=128, seed=0),
                    ckpt_path=ckpt)

    fit(2)
    first = np.array(RunStore(tmp_path / "run").array("loss"))
    fit(3, ckpt=str(tmp_path / "ckpt" / "last.ckpt"))     # died in on_fit_start: "already holds a run"
    store = RunStore(tmp_path / "run")
    assert store.finished_epochs == 3 and store.meta["completed"]
    np.testing.assert_array_equal(store.array("loss")[:, :2], first)
    assert np.isfinite(store.array("loss")).all() and store.problems(deep=True) == []


# ---------------------------------------------------------------- 16. dependency floors without the CVEs

def test_the_dependency_floors_exclude_releases_with_known_code_execution_bugs():
    from packaging.requirements import Requirement
    from packaging.version import Version

    declared = {Requirement(r).name.lower(): Requirement(r).specifier
                for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    vulnerable = {"pyarrow": ["14.0.0", "13.0.0"], "pillow": ["10.0.0", "9.5.0"]}   # CVE-2023-47248, CVE-2023-4863
    fixed = {"pyarrow": "14.0.1", "pillow": "10.0.1"}
    for name, versions in vulnerable.items():
        assert not any(declared[name].contains(Version(v)) for v in versions), (name, declared[name])
        assert declared[name].contains(Version(fixed[name]))
    assert json.loads(json.dumps(fixed))                   # the floors the docs name


# ---------------------------------------------------------------- 14. CSV cells never run as formulas

def test_csv_exports_neutralise_formulas_and_import_reads_them_back(tmp_path):
    from csl_core.run.export import export_run
    from csl_core.run.interop import export_interop

    names = ["=HYPERLINK(\"http://x\")", "+cmd", "-1+1", "@SUM(A1)", "'=kept", "plain"]
    ids = ["=1+1", "+a", "-b", "@c", "\tTAB", "'-quote"]
    from csl_core.run.files import atomic_write_csv

    samples = tmp_path / "samples.csv"                    # written as our exports write CSV (neutralised)
    atomic_write_csv(samples, pd.DataFrame({"sample_id": ids + [f"ok{i}" for i in range(6)],
                                            "label": [names[i % 6] for i in range(12)]}))
    loss = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    store = import_run(tmp_path / "run", samples_file=samples, losses_file=_npy(tmp_path, "l.npy", loss))
    assert sorted(store.classes) == sorted(names) and store.samples()["sample_id"].tolist()[:6] == ids
    cleaned = export_run(store.path).csv_path
    export_interop(store.path, tmp_path / "out", label_issue_table=True, arrays=True)
    for file in (cleaned, tmp_path / "out" / "label_issues.csv", tmp_path / "out" / "samples.csv"):
        for line in file.read_text().splitlines()[1:]:
            for cell in line.split(","):
                assert not cell.strip('"').startswith(("=", "+", "-", "@", "\t")), (file.name, line)
    # our own import reads our own export back unchanged
    assert main(["import", "--from", str(tmp_path / "out"), "--out", str(tmp_path / "again")]) == 0
    again = RunStore(tmp_path / "again")
    assert again.samples()["sample_id"].tolist() == store.samples()["sample_id"].tolist()
    assert again.classes == store.classes
    np.testing.assert_array_equal(again.csl(), store.csl())
