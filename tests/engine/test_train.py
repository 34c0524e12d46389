"""The trainer: a finished demo run, resume after a crash, the run report, the eval pass."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from csl_core.engine.tracker import EPOCH_FIELDS
from csl_core.engine.train import TrainConfig, train
from csl_core.run.store import RunError, RunLockedError, RunStore
from tests.support.files import write_image


def demo_config(run) -> TrainConfig:
    """The configuration ``demo_run`` was trained with, read back from its folder."""
    return TrainConfig.from_dict(RunStore(run).meta["config"])


class StopAt:
    """Asks the trainer to stop after batch ``batch`` of epoch ``epoch`` (0-based), as the dashboard's button does."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch, self.stop = epoch, batch, False

    def on_start(self, info): pass
    def on_epoch(self, epoch, summary): pass

    def on_batch(self, epoch, batch, batches):
        self.stop = (epoch, batch) >= (self.epoch, self.batch)

    def should_stop(self):
        return self.stop


def assert_same_run(run_a, run_b) -> None:
    a, b = RunStore(run_a), RunStore(run_b)
    assert a.finished_epochs == b.finished_epochs
    for name in EPOCH_FIELDS:
        np.testing.assert_allclose(a.array(name), b.array(name), rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(a.probabilities(), b.probabilities(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(a.scores()["csl_rank"], b.scores()["csl_rank"])


def test_a_finished_demo_run_records_every_sample_every_epoch(demo_run):
    store = RunStore(demo_run)
    meta = store.meta
    assert meta["completed"] and meta["finished_epochs"] == meta["epochs"]
    loss = store.array("loss")
    assert loss.shape == (meta["num_samples"], meta["epochs"]) and not np.isnan(loss).any()
    report = store.report()
    assert len(report["epochs"]) == meta["epochs"] and report["test_accuracy"] > 0.8
    assert report["counts"] == {"listed": meta["num_samples"], "used": meta["num_samples"], "skipped": 0,
                                "not_in_subset": 0}
    assert np.load(demo_run / "embeddings.npy").shape[0] == meta["num_samples"]
    checkpoint = store.load_checkpoint()  # weights_only=True
    assert checkpoint["epoch"] == meta["epochs"]
    scores = store.scores()
    truth = scores["is_mislabeled"].to_numpy(bool)
    assert roc_auc_score(truth, scores["csl"]) > 0.9
    assert not (demo_run / "lock").exists()


def test_stop_mid_epoch_then_resume_equals_an_uninterrupted_run(demo_run, tmp_path):
    config = demo_config(demo_run)
    result = train(config, tmp_path / "run", callbacks=StopAt(epoch=2, batch=3))
    assert result.stopped and result.finished_epochs == 2
    store = RunStore(tmp_path / "run")
    assert not store.meta.get("completed") and not (tmp_path / "run" / "lock").exists()
    with store.lock(), pytest.raises(RunLockedError, match="being trained"):
        train(config, tmp_path / "run", resume=True)  # a second trainer on the same run
    resumed = train(TrainConfig(device="cpu"), tmp_path / "run", resume=True)  # settings come from the run
    assert not resumed.stopped and resumed.finished_epochs == config.epochs
    assert_same_run(demo_run, tmp_path / "run")


class CrashAfterEpochWrite:
    """Crashes as a kill would between writing epoch 1 and saving its checkpoint."""

    def __init__(self, run):
        self.run = run

    def on_start(self, info): pass
    def on_batch(self, epoch, batch, batches): pass
    def should_stop(self): return False

    def on_epoch(self, epoch, summary):
        if epoch == 0:
            shutil.copy(self.run / "checkpoint.pt", self.run / "checkpoint-epoch-1.pt")
        if epoch == 1:
            shutil.copy(self.run / "checkpoint-epoch-1.pt", self.run / "checkpoint.pt")
            raise RuntimeError("simulated crash")


def test_a_crash_between_epoch_and_checkpoint_loses_at_most_that_epoch(demo_run, tmp_path):
    config = demo_config(demo_run)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, run, callbacks=CrashAfterEpochWrite(run))
    assert RunStore(run).finished_epochs == 2 and not (run / "lock").exists()
    train(config, run, resume=True)
    assert_same_run(demo_run, run)


def test_resume_needs_a_run_and_a_new_run_needs_an_empty_folder(demo_run, tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        train(TrainConfig(), tmp_path / "nothing", resume=True)
    with pytest.raises(RunError, match="already holds a run"):
        train(demo_config(demo_run), demo_run)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        train(TrainConfig(epochs=0), tmp_path / "zero")


def test_skipped_files_are_counted_in_the_run_report_and_training_goes_on(tmp_path):
    for c in ("a", "b"):
        for i in range(8):
            write_image(tmp_path / "data" / c / f"{i}.png", value=40 if c == "a" else 200)
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "data" / "b" / "labels.txt").write_text("not an image")
    config = TrainConfig(data=f"imagefolder:{tmp_path / 'data'}", epochs=1, image_size=8, device="cpu",
                         compute_embeddings=False)
    result = train(config, tmp_path / "run")
    report = result.run.report()
    assert report["counts"] == {"listed": 18, "used": 16, "skipped": 2, "not_in_subset": 0}
    assert sorted(s["id"].rsplit("/", 1)[-1] for s in report["skipped"]) == ["broken.png", "labels.txt"]
    assert result.run.finished_epochs == 1 and result.run.num_samples == 16


def test_eval_pass_records_a_second_loss(tmp_path):
    config = TrainConfig(data="demo", epochs=1, subset=300, device="cpu", eval_pass=True, compute_embeddings=False)
    store = train(config, tmp_path / "run").run
    assert "eval_loss" in store.meta["fields"]
    eval_loss = store.array("eval_loss")
    assert eval_loss.shape == (300, 1) and not np.isnan(eval_loss).any()
    assert not np.allclose(eval_loss, store.array("loss"))  # eval mode after the epoch, not the training pass
    assert "eval_csl" in store.scores().columns


def test_checkpoint_holds_only_tensors_and_plain_values(demo_run):
    from csl_core.engine.models import build_model

    state = torch.load(demo_run / "checkpoint.pt", weights_only=True)   # refuses anything but plain values
    assert set(state) >= {"epoch", "model", "optimizer", "scheduler", "tracker"}
    store = RunStore(demo_run)
    assert state["epoch"] == store.finished_epochs == state["tracker"]["epochs_done"]
    # the weights are the run's model: a fresh one of its architecture takes them, every tensor in place
    model = build_model(store.meta["model"], in_channels=store.meta["image_shape"][0],
                        num_classes=len(store.classes))
    model.load_state_dict(state["model"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state["model"].items())


def test_report_tells_samples_left_out_by_subset_from_skipped_files(tmp_path):
    for c in ("a", "b"):
        for i in range(8):
            write_image(tmp_path / "data" / c / f"{i}.png", value=40 if c == "a" else 200)
    (tmp_path / "data" / "b" / "labels.txt").write_text("not an image")
    config = TrainConfig(data=f"imagefolder:{tmp_path / 'data'}", epochs=1, image_size=8, device="cpu",
                         subset=10, compute_embeddings=False)
    report = train(config, tmp_path / "run").run.report()
    assert report["counts"] == {"listed": 17, "used": 10, "skipped": 1, "not_in_subset": 6}


def test_the_training_step_records_each_samples_loss_and_steps_the_optimiser():
    import torch.nn.functional as F

    from csl_core.engine.step import train_step
    from csl_core.engine.tracker import CSLTracker

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    x, y, index = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0]), torch.tensor([4, 3, 2, 1, 0])
    expected = F.cross_entropy(model(x), y, reduction="none").detach()
    before = model.weight.detach().clone()
    tracker = CSLTracker(5, 3)
    losses = train_step(model, x, y, optimizer, scheduler, tracker=tracker, index=index)
    torch.testing.assert_close(losses.detach(), expected)
    record = tracker.end_epoch()
    np.testing.assert_allclose(record["loss"][index.numpy()], expected.numpy(), rtol=1e-6)  # by sample index
    assert not torch.equal(model.weight, before)          # the optimiser stepped
    assert scheduler.get_last_lr() == [0.05]              # and the schedule


def test_the_trainer_the_estimator_and_the_warmup_train_through_one_step(monkeypatch, tmp_path):
    from csl_core.data import load_demo
    from csl_core.engine import memorization, step, warmup
    from csl_core.engine import train as train_module

    calls = []
    real = step.train_step

    def counting(*args, **kwargs):
        calls.append(kwargs.get("tracker") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "train_step", counting)
    monkeypatch.setattr(train_module, "train_step", counting)
    train(TrainConfig(data="demo", epochs=1, subset=64, batch_size=32), tmp_path / "run")
    assert calls == [True, True]                           # two batches, each recorded by the tracker
    source = load_demo()[0]
    warmup.warmup_confusion(source, epochs=1, max_samples=64, batch_size=32)
    assert calls[2:] == [False]                            # the warm-up's half of 64 images: one batch
    recipe = {"model": "small-cnn", "epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.9,
              "weight_decay": 5e-4, "schedule": "onecycle", "augment": False, "flip": False, "pad": 0,
              "mean": [0.5], "std": [0.25], "in_channels": 1, "num_classes": 10}
    rows = np.arange(40)
    memorization.train_subset_model(source.images, rows, source.labels[rows], rows < 32, recipe)
    assert calls[3:] == [False, False]                     # 32 of 40 samples in training, batches of 16


def test_one_augmentation_rule_for_the_trainer_and_the_estimator(demo_run):
    from csl_core.engine.memorization import recipe_for
    from csl_core.engine.preprocess import augmentation_for, preprocess_for

    assert augmentation_for(TrainConfig(data="demo"), 8) == {"augment": False, "flip": False, "pad": 0}
    assert augmentation_for(TrainConfig(data="fashion-mnist"), 28) == {"augment": True, "flip": False, "pad": 3}
    assert augmentation_for(TrainConfig(data="cifar10"), 32) == {"augment": True, "flip": True, "pad": 4}
    assert augmentation_for(TrainConfig(data="cifar10", augment=False), 32)["augment"] is False
    store = RunStore(demo_run)
    preprocess = preprocess_for(demo_config(demo_run), store.meta, store.meta["image_shape"][1], torch.device("cpu"),
                                channels_last=False)
    recipe = recipe_for(store)
    assert (recipe["augment"], recipe["flip"], recipe["pad"]) == (preprocess.augment, preprocess.flip, preprocess.pad)
