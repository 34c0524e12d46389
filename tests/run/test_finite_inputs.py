"""#29 (5, 8): numbers that would rank every sample wrongly are refused where they enter: an infinite
embedding (it became the nearest neighbour of almost every sample) at RunWriter.finish and at ``import``,
before a run folder is made; an infinite or negative loss at RunWriter.write_epoch, not only at finish."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csl_core.errors import CSLError
from csl_core.run.interop import import_run
from csl_core.run.writer import RunWriter

N = 12


def _epoch(loss=None):
    return {"loss": np.full(N, 0.5, np.float32) if loss is None else loss, "correct": np.ones(N, bool),
            "margin": np.zeros(N, np.float32), "p_given": np.full(N, .5, np.float32),
            "p_max": np.full(N, .5, np.float32)}


def test_run_writer_refuses_an_infinite_embedding(tmp_path):
    writer = RunWriter(tmp_path / "run", classes=["a", "b"], labels=[0, 1] * (N // 2))
    writer.write_epoch(_epoch())
    features = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    features[5, 2] = np.inf
    with pytest.raises(CSLError, match="sample 5"):
        writer.finish(embeddings=features)
    assert not (tmp_path / "run" / "embeddings.npy").exists()


@pytest.mark.parametrize("value", [np.inf, -1.0])
def test_run_writer_refuses_an_infinite_or_negative_loss_at_the_epoch(tmp_path, value):
    writer = RunWriter(tmp_path / "run", classes=["a", "b"], labels=[0, 1] * (N // 2))
    loss = np.full(N, 0.5, np.float32)
    loss[3] = value
    with pytest.raises(ValueError, match="sample 3"):
        writer.write_epoch(_epoch(loss))
    assert writer.finished_epochs == 0
    loss[3] = np.nan                                        # a sample not seen this epoch: accepted
    writer.write_epoch(_epoch(loss))
    assert writer.finished_epochs == 1


def test_import_refuses_an_infinite_embedding_before_making_the_run(tmp_path):
    pd.DataFrame({"sample_id": [f"s{i}" for i in range(N)], "label": ["a", "b"] * (N // 2)}).to_csv(
        tmp_path / "samples.csv", index=False)
    np.save(tmp_path / "losses.npy", np.full((N, 2), 0.5, np.float32))
    features = np.ones((N, 3), np.float32)
    features[7] = np.inf
    np.save(tmp_path / "embeddings.npy", features)
    with pytest.raises(ValueError, match="sample 7"):
        import_run(tmp_path / "run", samples_file=tmp_path / "samples.csv", losses_file=tmp_path / "losses.npy",
                   embeddings_file=tmp_path / "embeddings.npy", layout="samples-epochs")
    assert not (tmp_path / "run" / "meta.json").exists()


def test_a_crafted_infinite_embedding_on_disk_is_said_never_scored(tmp_path, copy_demo):
    from csl_core.run.store import RunStore

    run = copy_demo(tmp_path / "run")
    for kept in run.glob("scores-*.parquet"):
        kept.unlink()
    features = np.load(run / "embeddings.npy")
    features[9, 0] = np.inf
    np.save(run / "embeddings.npy", features)
    with pytest.raises(CSLError, match="sample 9's embedding"):
        RunStore(run).scores()
