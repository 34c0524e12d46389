"""The one training step (forward, per-sample loss, tracker update, backward, optimiser and schedule step)
and the passes in eval mode, shared by the trainer, the memorisation estimator and the warm-up."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .runtime import make_loader


def train_step(model, x: torch.Tensor, y: torch.Tensor, optimizer, scheduler=None, *, tracker=None,
               index: torch.Tensor | None = None, scaler=None, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One step on the batch ``x`` (preprocessed, on the device) with labels ``y``: the forward pass (under
    autocast when ``amp_dtype``), the per-sample cross-entropy in float32, ``tracker.update`` for the samples
    ``index`` (no host sync: the tracker keeps its buffers on the device), the backward pass of the mean loss
    (through ``scaler`` for float16), the optimiser step and, when given, the schedule's step.
    Returns the per-sample losses, on the device."""
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
    if tracker is not None:
        tracker.update(index, logits, y, losses)
    optimizer.zero_grad(set_to_none=True)
    loss = losses.mean()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return losses


@torch.no_grad()
def score_pass(model, dataset, preprocess, tracker, device, config, amp_dtype, sampler=None) -> None:
    """One pass in eval mode without augmentation: the authors' released scoring protocol."""
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=max(config.batch_size, 256), shuffle=False, seed=0,
                         num_workers=config.num_workers, pin_memory=device.type == "cuda", sampler=sampler)
    for x, y, index in loader:
        x = preprocess(x.to(device, non_blocking=True), train=False)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        tracker.update(index, logits, y.to(device, non_blocking=True))
    model.train(was_training)


@torch.no_grad()
def predict(model, dataset, preprocess, device, *, batch_size: int = 512, embeddings: bool = False,
            num_workers: int = 0):
    """Logits (and penultimate-layer embeddings) for every sample of ``dataset``, in index order."""
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0, num_workers=num_workers,
                         pin_memory=device.type == "cuda")
    logits, embeds = [], []
    for x, _, _ in loader:
        x = preprocess(x.to(device, non_blocking=True), train=False)
        if embeddings:
            e = model.embed(x)
            embeds.append(e.float().cpu())
            logits.append(model.head(e).float().cpu())
        else:
            logits.append(model(x).float().cpu())
    out_logits = torch.cat(logits).numpy()
    return (out_logits, torch.cat(embeds).numpy()) if embeddings else out_logits
