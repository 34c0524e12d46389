"""The training step makes no host synchronisation with the tracker on (CUDA only; skipped elsewhere).

``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call (``.item()``, ``.cpu()``,
a blocking copy, a boolean mask) into an error. It is switched on after each epoch's first step
(allocator and cuDNN warm-up) and off after its last, so the epoch's one copy to the host in
``CSLTracker.end_epoch`` and the checkpoint stay outside.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csl_core.engine.models import build_model
from csl_core.engine.tracker import CSLTracker
from csl_core.engine.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _SyncGuard:
    """Callbacks for ``train()``: sync debugging on from each epoch's second step to its last."""

    def __init__(self):
        self.guarded_steps = 0

    def on_start(self, info):
        pass

    def on_batch(self, epoch, batch, batches):
        if batch < batches:
            self.guarded_steps += batch > 1
            torch.cuda.set_sync_debug_mode("error")
        else:
            self.guarded_steps += 1
            torch.cuda.set_sync_debug_mode("default")

    def on_epoch(self, epoch, summary):
        pass

    def should_stop(self):
        return False


@pytest.fixture
def restore_sync_mode():
    yield
    torch.cuda.set_sync_debug_mode("default")


def test_training_step_with_tracker_does_not_synchronise(restore_sync_mode):
    device = torch.device("cuda")
    torch.manual_seed(0)
    n, classes, batch = 512, 10, 64
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8).pin_memory()
    labels = torch.randint(0, classes, (n,)).pin_memory()
    model = build_model("small-cnn", in_channels=3, num_classes=classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tracker = CSLTracker(n, classes, device=device)
    batches = [torch.arange(i, min(i + batch, n)).pin_memory() for i in range(0, n, batch)]
    for step, index in enumerate(batches):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        x = images[index].pin_memory().to(device, non_blocking=True).float() / 255
        y = labels[index].pin_memory().to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported()):
            logits = model(x)
            losses = F.cross_entropy(logits.float(), y, reduction="none")
        tracker.update(index, logits, y, losses)
        optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        optimizer.step()
    torch.cuda.set_sync_debug_mode("default")
    record = tracker.end_epoch()
    assert not np.isnan(record["loss"]).any()


def test_trainer_step_does_not_synchronise(tmp_path, restore_sync_mode):
    guard = _SyncGuard()
    # fp16 needs GradScaler, whose overflow check synchronises once a step by design; bf16 does not.
    config = TrainConfig(data="demo", epochs=2, batch_size=64, device="cuda", augment=True,
                         amp=None if torch.cuda.is_bf16_supported() else False, compute_embeddings=False)
    result = train(config, tmp_path / "run", callbacks=guard)
    assert result.finished_epochs == 2
    assert guard.guarded_steps > 20
    assert not np.isnan(result.run.array("loss")).any()
