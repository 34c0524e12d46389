"""DDP under torchrun on the CPU (gloo, 2 ranks): coverage, exactly-once recording, same CSL.

The 2-rank run trains the demo through the real launcher and CLI. Its reference is one process fed
the same per-rank batches: the same DistributedSampler shards, each shard's batch through the model
separately (so BatchNorm sees the batch a rank sees) and the gradient of the mean of the two
per-rank mean losses, which is what DDP's averaged all-reduce computes. The arithmetic is the same
up to the order of float32 additions: on the development machine (one thread per process) the two
agree bit for bit. The tolerance (1e-4 relative, per sample per epoch and on CSL) is for other BLAS
builds and thread counts, where the summation order may differ.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from csl_core.config import TrainConfig, training_set_for
from csl_core.engine.models import build_model
from csl_core.engine.preprocess import Preprocess
from csl_core.engine.tracker import CSLTracker
from csl_core.engine.train import build_optimizer, make_loader, train
from csl_core.run.store import RunStore

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
BATCH = 64  # per rank
WORLD = 2
RTOL = 1e-4

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with gloo is not available")]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> RunStore:
    out = tmp_path_factory.mktemp("ddp") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "-m", "csl_core", "train", "--data", "demo", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
               "--device", "cpu", "--no-amp", "--eval-pass", "--quiet", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return RunStore(out)


@pytest.fixture(scope="module")
def config() -> TrainConfig:
    # fp32: the reference below recomputes the losses in fp32; bf16 rounding is not what this compares
    return TrainConfig(data="demo", epochs=EPOCHS, batch_size=BATCH, device="cpu", amp=False)


def _reference(store: RunStore, config: TrainConfig):
    """One process doing what the two DDP ranks do together; returns per-epoch losses and probabilities."""
    meta = store.meta
    training_set = training_set_for(config)
    dataset = training_set.dataset()
    torch.manual_seed(config.seed)
    model = build_model(meta["model"], in_channels=training_set.source.channels,
                        num_classes=len(training_set.classes))
    preprocess = Preprocess(meta["normalisation"]["mean"], meta["normalisation"]["std"], augment=False,
                            flip=False, pad=0, device=torch.device("cpu"), channels_last=False)
    samplers = [torch.utils.data.DistributedSampler(dataset, num_replicas=WORLD, rank=r, shuffle=True,
                                                    seed=config.seed) for r in range(WORLD)]
    optimizer, scheduler = build_optimizer(model, config, math.ceil(len(samplers[0]) / BATCH))
    trackers = [CSLTracker(len(dataset), len(training_set.classes)) for _ in range(WORLD)]
    model.train()
    for epoch in range(EPOCHS):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        loaders = [make_loader(dataset, batch_size=BATCH, shuffle=False, seed=0, sampler=s) for s in samplers]
        for batches in zip(*loaders):
            optimizer.zero_grad(set_to_none=True)
            rank_means = []
            for tracker, (x, y, index) in zip(trackers, batches):
                logits = model(preprocess(x, train=True))
                losses = F.cross_entropy(logits.float(), y, reduction="none")
                tracker.update(index, logits, y, losses)
                rank_means.append(losses.mean())
            (sum(rank_means) / WORLD).backward()
            optimizer.step()
            scheduler.step()
        for tracker in trackers:
            tracker.end_epoch()
    # The lowest rank that saw a sample is the one recorded (DistributedSampler's padding repeats some).
    first, second = (t.history()["loss"] for t in trackers)
    loss = np.where(np.isnan(first), second, first)
    probability_sum = sum(t.probability_sum for t in trackers)
    visits = sum(t.visits for t in trackers)
    return loss, (probability_sum / visits.unsqueeze(1)).numpy(), visits.numpy()


def test_every_sample_recorded_once_per_epoch(ddp_run):
    meta = ddp_run.meta
    assert meta["finished_epochs"] == EPOCHS and meta.get("completed")
    n = ddp_run.num_samples
    assert n % WORLD == 1, "the demo's odd size makes the sampler pad; that is what this test is about"
    for name, values in ddp_run.arrays().items():
        assert values.shape == (n, EPOCHS)
        if values.dtype != np.bool_:
            assert not np.isnan(values).any(), f"{name}: a sample is missing from some epoch"
    assert not (ddp_run.path / "lock").exists()


def test_same_run_folder_as_one_process(ddp_run, config, tmp_path):
    single = train(TrainConfig(**{**config.__dict__, "epochs": 1, "eval_pass": True, "compute_embeddings": True}),
                   tmp_path / "single").run
    def layout(run):  # the kept derived files are named after the epoch count, which differs here
        return {re.sub(r"^(scores|class-loss|evaluation)-\d+", r"\1-N", p.relative_to(run.path).as_posix())
                for p in run.path.rglob("*")}

    assert layout(single) == layout(ddp_run)
    assert set(single.meta) == set(ddp_run.meta)
    assert single.meta["fields"] == ddp_run.meta["fields"]
    for name, values in single.arrays().items():
        assert ddp_run.array(name).dtype == values.dtype
    assert ddp_run.scores().shape[0] == ddp_run.num_samples
    assert json.loads((ddp_run.path / "report.json").read_text())["epochs"][-1]["epoch"] == EPOCHS - 1
    assert np.load(ddp_run.path / "embeddings.npy").shape[0] == ddp_run.num_samples


def test_csl_equals_one_process_fed_the_same_batches(ddp_run, config):
    loss, probabilities, visits = _reference(ddp_run, config)
    recorded = np.asarray(ddp_run.array("loss"))
    np.testing.assert_allclose(recorded, loss, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(ddp_run.scores()["csl"].to_numpy(), np.nansum(loss, axis=1), rtol=RTOL)
    # The padded sample is visited twice an epoch; its probabilities are averaged, not doubled.
    padding = WORLD * math.ceil(ddp_run.num_samples / WORLD) - ddp_run.num_samples
    assert visits.min() == EPOCHS and visits.sum() == (ddp_run.num_samples + padding) * EPOCHS
    np.testing.assert_allclose(ddp_run.probabilities(), probabilities, rtol=RTOL, atol=RTOL)
