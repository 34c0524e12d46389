"""Input-loss curvature, the optional (expensive) baseline of the paper."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import IndexedDataset, TrainingSet
from ..engine.preprocess import Preprocess
from ..engine.train import make_loader
from ..run.store import RunStore
from .surgery import load_trained_model

# ---------------------------------------------------------------- input-loss curvature (optional baseline)

def input_loss_curvature(model: torch.nn.Module, dataset: IndexedDataset, preprocess: Preprocess,
                         device: torch.device, *, directions: int = 10, step: float = 1e-3, seed: int = 0,
                         batch_size: int = 256) -> np.ndarray:
    """Per sample, the mean over Rademacher directions ``v`` of ``|grad L(x + h v) - grad L(x)| / h``
    (input gradients of the loss at the given label; Garg et al. 2024), in index order."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for x, y, _ in make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0):
        x = preprocess(x.to(device), train=False)
        y = y.to(device)
        base = _input_gradient(model, x, y)
        total = torch.zeros(len(x), device=device)
        for _ in range(directions):
            v = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(device, x.dtype)
            total += ((_input_gradient(model, x + step * v, y) - base).flatten(1).norm(dim=1) / step)
        out.append((total / directions).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def _input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient


class CurvatureRecorder:
    """After every epoch, the curvature of every sample under the just-saved checkpoint."""

    def __init__(self, run_dir: Path, training_set: TrainingSet, device: torch.device, seed: int):
        self.run_dir, self.device, self.seed = run_dir, device, seed
        self.dataset = training_set.dataset()
        self.total: np.ndarray | None = None
        self.epochs = 0
        self.seconds = 0.0

    def record(self, epoch: int) -> None:
        began = time.perf_counter()
        model, preprocess = load_trained_model(RunStore(self.run_dir), self.device)
        values = input_loss_curvature(model, self.dataset, preprocess, self.device,
                                      seed=self.seed * 1000 + epoch)
        self.total = values if self.total is None else self.total + values
        self.epochs += 1
        self.seconds += time.perf_counter() - began

    def result(self) -> np.ndarray:
        return self.total / max(1, self.epochs)
