"""Damaged runs: truncated meta.json and arrays, damaged checkpoints, a sample table naming a pipe or a device."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from csl_core.config import TrainConfig
from csl_core.engine.train import train
from csl_core.run.store import RunError, RunStore, run_problems

# ---------------------------------------------------------------- damaged runs

def test_a_truncated_meta_json_names_the_file_and_the_dashboard_skips_the_run(tmp_path, make_run):
    from csl_core.run.folders import list_runs

    good = make_run(tmp_path / "runs" / "good")
    bad = make_run(tmp_path / "runs" / "bad")
    text = (bad.path / "meta.json").read_text()
    (bad.path / "meta.json").write_text(text[: len(text) // 3])
    with pytest.raises(RunError, match="meta.json is damaged"):
        RunStore(bad.path)
    assert list_runs(tmp_path / "runs")[0] == bad.path        # the newest ...
    healthy = [p for p in list_runs(tmp_path / "runs") if not run_problems(p)]
    assert healthy == [good.path]                              # ... but not healthy
    assert "meta.json" in run_problems(bad.path)[0]


def test_a_truncated_array_is_refused_not_zero_padded(tmp_path, make_run):
    store = make_run(tmp_path / "run", n=40, epochs=3, finished=2)
    loss = store.path / "arrays" / "loss.npy"
    size = loss.stat().st_size
    with open(loss, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(RunError, match="loss.npy is damaged"):
        store.scores()
    with pytest.raises(RunError, match="loss.npy is damaged"):
        store.write_epoch(2, {"loss": np.ones(40, np.float32), "correct": np.ones(40, bool),
                              "margin": np.zeros(40, np.float32), "p_given": np.ones(40, np.float32),
                              "p_max": np.ones(40, np.float32)})
    assert loss.stat().st_size == size - 100                   # not padded with zeros
    assert any("loss.npy" in p for p in run_problems(store.path))
    with pytest.raises(RunError, match="cannot be resumed.*loss.npy"):
        train(TrainConfig(device="cpu"), store.path, resume=True)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_checkpoint_is_refused_before_resume(tmp_path, damage, make_run):
    store = make_run(tmp_path / "run", n=6, epochs=3, finished=1)
    store.save_checkpoint({"epoch": 1, "model": {"w": torch.arange(4096, dtype=torch.float32)}})
    assert store.load_checkpoint()["epoch"] == 1
    file = store.path / "checkpoint.pt"
    data = bytearray(file.read_bytes())
    if damage == "flip":
        rng = np.random.default_rng(0)
        for i in rng.choice(np.arange(len(data) // 2, len(data) - 200), 64, replace=False):
            data[i] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    file.write_bytes(bytes(data))
    with pytest.raises(RunError, match="checkpoint.pt") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value)
    with pytest.raises(RunError, match="cannot be resumed.*checkpoint.pt"):
        train(TrainConfig(device="cpu"), store.path, resume=True)


def test_a_truncated_checkpoint_without_a_recorded_checksum_is_a_clear_error(tmp_path, make_run):
    store = make_run(tmp_path / "run", finished=1)
    torch.save({"epoch": 1, "model": {"w": torch.zeros(2048)}}, store.path / "checkpoint.pt")  # older run
    data = (store.path / "checkpoint.pt").read_bytes()
    (store.path / "checkpoint.pt").write_bytes(data[:1000])
    with pytest.raises(RunError, match="checkpoint.pt cannot be read") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value)




def test_a_sample_table_naming_a_pipe_or_a_device_opens_neither(tmp_path, make_run):
    from csl_core.run.images import sample_image

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    paths = [str(pipe), "/dev/zero"]
    store = make_run(tmp_path / "run", paths=paths, labels=[0, 0], classes=["a"],
                     epochs=1, config={}, loss=lambda epoch: np.linspace(0, 1, 2))
    for index in range(2):
        with pytest.raises(FileNotFoundError, match="is not a file"):
            sample_image(store.path, index)                  # would block on the pipe, or read forever
