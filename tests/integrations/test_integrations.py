"""The Lightning and Hugging Face examples train 2 epochs on the demo on CPU; their run folders open in
every dashboard page, and the Lightning run's CSL equals a plain loop's tracker fed the same batches."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from csl_core.engine.tracker import CSLTracker
from csl_core.run.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("pages/run.py", "pages/trajectories.py", "pages/galleries.py", "pages/review.py", "pages/duplicates.py",
         "pages/export.py", "pages/evaluate.py")


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def opens_in_every_page(run: Path, monkeypatch, open_app) -> None:
    from streamlit import config

    monkeypatch.setenv("CSL_RUNS_DIR", str(run.parent))
    config.set_option("runner.magicEnabled", False)  # as in test_pages.py
    try:
        at = open_app()
        at.sidebar.selectbox(key="run_path").set_value(str(run)).run()
        for page in PAGES:
            at.switch_page(page).run()
            assert not at.exception, (page, [e.value for e in at.exception])
            assert not at.error, (page, [e.value for e in at.error])
            assert not any("No run is open" in i.value for i in at.info), page
    finally:
        config.set_option("runner.magicEnabled", True)


@pytest.mark.slow
def test_lightning_example_writes_a_run_with_the_trackers_csl(tmp_path, monkeypatch, open_app):
    pytest.importorskip("pytorch_lightning" if importlib.util.find_spec("lightning") is None else "lightning")
    lightning_demo = example("lightning_demo")
    run = lightning_demo.main(["--out", str(tmp_path / "runs" / "lightning"), "--epochs", "2", "--seed", "3",
                               "--accelerator", "cpu"])
    store = RunStore(run)
    assert store.meta["completed"] and store.finished_epochs == 2 and store.meta["trainer"] == "lightning"
    assert not np.isnan(store.array("loss")).any()               # every sample recorded in each epoch
    assert (store.path / "embeddings.npy").is_file()

    # The same model, batches and optimiser in a plain loop with the tracker: the same CSL.
    from csl_core.data import build_training_set

    training_set = build_training_set("demo", seed=3)
    dataset = training_set.dataset()
    torch.manual_seed(3)
    module = lightning_demo.DigitsModule(training_set.source.channels, len(training_set.classes))
    optimizer = module.configure_optimizers()
    tracker = CSLTracker(len(dataset), len(training_set.classes))
    batches = lightning_demo.loader(dataset, batch_size=128, seed=3)
    module.train()
    for _ in range(2):
        for i, batch in enumerate(batches):
            out = module.training_step(batch, i)
            tracker.update(out["index"], out["logits"], out["targets"], out["losses"])
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
        tracker.end_epoch()
    np.testing.assert_allclose(store.csl(), tracker.cumulative_loss(), rtol=1e-4, atol=1e-5)
    csl_auroc = {row["score"]: row["auroc"] for row in store.evaluation("is_mislabeled")["scores"]}["csl"]
    assert csl_auroc > 0.8

    opens_in_every_page(run, monkeypatch, open_app)


@pytest.mark.slow
def test_lightning_under_ddp_records_every_sample_once_per_epoch(tmp_path):
    pytest.importorskip("pytorch_lightning" if importlib.util.find_spec("lightning") is None else "lightning")
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_demo.py"), "--accelerator", "cpu",
                           "--devices", "2", "--epochs", "2", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = RunStore(out)
    assert store.meta["completed"] and store.finished_epochs == 2
    # each rank trained on half of the samples; the all-reduce gives rank 0 every one of them, each epoch
    assert not np.isnan(store.array("loss")).any()


@pytest.mark.slow
def test_huggingface_example_writes_a_run_that_opens_everywhere(tmp_path, monkeypatch, open_app):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    run = example("huggingface_demo").main(["--out", str(tmp_path / "runs" / "hf"), "--epochs", "2", "--cpu"])
    store = RunStore(run)
    assert store.meta["completed"] and store.finished_epochs == 2 and store.meta["trainer"] == "huggingface"
    loss = store.array("loss")
    assert not np.isnan(loss).any()                              # the index reached the tracker for every sample
    assert np.all(loss[:, 1].mean() < loss[:, 0].mean())         # it trained
    assert store.probabilities().shape == (store.num_samples, 10)
    opens_in_every_page(run, monkeypatch, open_app)


@pytest.mark.slow
def test_huggingface_under_ddp_records_every_sample_once_per_epoch(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    out = tmp_path / "hf-ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "examples" / "huggingface_demo.py"), "--cpu", "--epochs", "2",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = RunStore(out)
    assert store.meta["completed"] and store.finished_epochs == 2 and store.meta["trainer"] == "huggingface"
    # each rank saw about half of the samples; the all-reduce gives rank 0 every one of them, each epoch
    loss = store.array("loss")
    assert loss.shape == (store.num_samples, 2) and not np.isnan(loss).any()
    assert store.probabilities().shape == (store.num_samples, 10)
    assert not (out / "lock").exists()


def test_the_callbacks_explain_what_the_training_step_must_return(tmp_path):
    lightning = pytest.importorskip("csl_core.integrations.lightning")
    callback = lightning.CSLCallback(tmp_path / "run", classes=["a", "b"], labels=[0, 1])
    with pytest.raises(ValueError, match="must return a dict with 'logits'"):
        callback.on_train_batch_end(None, None, torch.tensor(0.5), None, 0)
