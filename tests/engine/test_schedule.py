"""The learning-rate schedule on the shortest trainings."""
from __future__ import annotations

import numpy as np

from csl_core.config import TrainConfig
from csl_core.engine.train import train
from csl_core.run.store import RunStore


def test_a_training_of_exactly_four_steps_does_not_crash_the_schedule(tmp_path):
    config = TrainConfig(data="demo", epochs=1, subset=512, batch_size=128, device="cpu", compute_embeddings=False)
    result = train(config, tmp_path / "run")                     # 4 steps: OneCycleLR divided by zero
    store = RunStore(tmp_path / "run")
    assert result.finished_epochs == 1 and store.meta["completed"] and np.isfinite(store.csl()).all()
    assert store.report()["epochs"][0]["lr"] < 0.5 * config.lr   # the schedule stepped on past its peak
