"""RunWriter: a foreign training loop's tracker becomes a run folder the rest of the tool reads unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from csl_core.engine.tracker import CSLTracker
from csl_core.run.duplicates import find_duplicates, run_images
from csl_core.run.export import export_run
from csl_core.run.images import sample_image
from csl_core.run.store import RunError, RunStore
from csl_core.run.writer import RunWriter, sample_table

N, C, EPOCHS = 40, 3, 3
CLASSES = ["cat", "dog", "fox"]


def images_and_labels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(N, 6, 5, 3), dtype=np.uint8), rng.integers(0, C, size=N)


def foreign_loop(writer: RunWriter | None, labels: np.ndarray, *, epochs: int = EPOCHS) -> CSLTracker:
    """A plain PyTorch loop that is not ours: a linear model on random features, shuffled batches of 8."""
    torch.manual_seed(0)
    features = torch.randn(N, 4)
    targets = torch.as_tensor(labels)
    model = torch.nn.Linear(4, C)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = CSLTracker(N, C)
    for _ in range(epochs):
        for index in torch.randperm(N).split(8):
            logits = model(features[index])
            losses = F.cross_entropy(logits, targets[index], reduction="none")
            tracker.update(index, logits, targets[index], losses)
            optimizer.zero_grad()
            losses.mean().backward()
            optimizer.step()
        if writer is not None:
            assert writer.store.is_locked()          # the dashboard follows a locked run live
            writer.end_epoch(tracker)
        else:
            tracker.end_epoch()
    return tracker


def test_a_foreign_loop_writes_a_run_with_the_trackers_csl(tmp_path):
    images, labels = images_and_labels()
    writer = RunWriter(tmp_path / "run", classes=CLASSES, labels=labels, images=images, epochs=EPOCHS,
                       source="notebook", model="linear")
    tracker = foreign_loop(writer, labels)
    assert RunStore(tmp_path / "run").finished_epochs == EPOCHS and not RunStore(tmp_path / "run").meta.get("completed")
    embeddings = np.random.default_rng(1).normal(size=(N, 5))
    store = writer.finish(embeddings=embeddings)

    assert not store.is_locked() and store.meta["completed"] and store.meta["source"] == "notebook"
    np.testing.assert_allclose(store.csl(), tracker.cumulative_loss(), rtol=1e-6)
    np.testing.assert_allclose(store.array("margin"), tracker.history()["margin"], rtol=1e-6)
    np.testing.assert_allclose(store.probabilities(), tracker.mean_probabilities(), rtol=1e-6)
    np.testing.assert_allclose(np.load(store.path / "embeddings.npy"), embeddings.astype(np.float32))
    scores = store.scores()
    assert list(scores["class_name"]) == [CLASSES[c] for c in labels]
    assert [e["epoch"] for e in store.report()["epochs"]] == list(range(EPOCHS))
    # the images the galleries and the duplicate finder show are the ones handed in
    assert np.array_equal(np.asarray(sample_image(store.path, 7)), images[7])
    assert np.array_equal(run_images(store), images)


def test_a_run_from_files_keeps_absolute_paths_and_exports_a_tree(tmp_path, monkeypatch):
    _, labels = images_and_labels()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    paths = []
    for i in range(N):
        Image.new("RGB", (4, 4), (max(i, 1), 0, 0)).save(tmp_path / "photos" / f"{i}.png")   # 0 and 1: copies
        paths.append(f"photos/{i}.png")
    writer = RunWriter("run", classes=CLASSES, labels=labels, paths=paths)
    foreign_loop(writer, labels, epochs=2)
    store = writer.finish()
    samples = store.samples()
    assert samples["path"].iloc[3] == str(tmp_path / "photos" / "3.png")
    assert sample_image(store.path, 3).getpixel((0, 0)) == (3, 0, 0)
    result = export_run(store.path, imagefolder=True)
    assert sum(1 for _ in result.tree_path.rglob("*.png")) == N
    groups = find_duplicates(store.path).groups                   # the files are hashed though no trainer of ours
    assert [sorted(map(int, m)) for m in groups[groups["exact"]]["members"]] == [[0, 1]]


def test_more_epochs_than_announced_grow_the_arrays_and_fewer_end_the_run(tmp_path):
    _, labels = images_and_labels()
    writer = RunWriter(tmp_path / "more", classes=CLASSES, labels=labels, epochs=1)
    foreign_loop(writer, labels, epochs=3)
    assert writer.finish().array("loss").shape == (N, 3)
    writer = RunWriter(tmp_path / "fewer", classes=CLASSES, labels=labels, epochs=10)
    foreign_loop(writer, labels, epochs=2)
    store = writer.finish()
    assert (store.meta["epochs"], store.finished_epochs) == (2, 2)


def test_truth_columns_drive_the_evaluation(tmp_path):
    _, labels = images_and_labels()
    truth = labels.copy()
    truth[:5] = (labels[:5] + 1) % C
    samples = sample_table(labels, CLASSES, true_labels=truth)
    writer = RunWriter(tmp_path / "run", classes=CLASSES, samples=samples)
    foreign_loop(writer, labels, epochs=2)
    store = writer.finish()
    assert store.meta["has_ground_truth"]
    assert store.scores()["is_mislabeled"].sum() == 5
    assert "auroc" in str(store.evaluation("is_mislabeled")).lower()


@pytest.mark.parametrize("kwargs, message", [
    ({"images": np.zeros((N, 4, 4, 3), np.float32)}, "uint8"),
    ({"images": np.zeros((N - 1, 4, 4), np.uint8)}, f"{N - 1} images for {N} samples"),
    ({"images": np.zeros((N, 4, 4, 2), np.uint8)}, "channels last"),
    ({"paths": ["nowhere.png"] * N}, "do not exist"),
    ({"paths": ["a.png"]}, f"1 paths for {N} labels"),
])
def test_bad_sample_tables_are_refused_with_a_message(tmp_path, kwargs, message):
    _, labels = images_and_labels()
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        RunWriter(tmp_path / "run", classes=CLASSES, labels=labels, **kwargs)
    assert not (tmp_path / "run" / "meta.json").exists()


def test_labels_out_of_range_and_wrong_epoch_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="0..2 for 3 classes"):
        RunWriter(tmp_path / "bad", classes=CLASSES, labels=[0, 1, 3])
    _, labels = images_and_labels()
    writer = RunWriter(tmp_path / "run", classes=CLASSES, labels=labels)
    with pytest.raises(ValueError, match=rf"shape \(39,\); expected \({N},\)"):
        writer.write_epoch({"loss": np.zeros(N - 1)})
    with pytest.raises(ValueError, match="tracker records 5 samples"):
        writer.end_epoch(CSLTracker(5, C))
    with pytest.raises(RunError, match="no epoch was written"):
        writer.finish()
    assert not RunStore(tmp_path / "run").is_locked()
    with pytest.raises(RunError, match="already holds a run"):
        RunWriter(tmp_path / "run", classes=CLASSES, labels=labels)


def test_a_damaged_image_array_is_named_not_shown(tmp_path):
    images, labels = images_and_labels()
    writer = RunWriter(tmp_path / "run", classes=CLASSES, labels=labels, images=images)
    foreign_loop(writer, labels, epochs=1)
    store = writer.finish()
    np.save(store.path / "images.npy", images[:5])                 # rows no longer match the samples
    with pytest.raises(LookupError, match=r"images.npy holds uint8 \(5, 6, 5, 3\)"):
        sample_image(store.path, 0)
    assert run_images(store) is None
