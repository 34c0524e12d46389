"""Turning uint8 images on the training device into the network's input: normalisation, and the
batched random crop and flip that each source kind's defaults ask for."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..data import source_kind


class Preprocess:
    """uint8 ``(B, C, H, W)`` on the device -> normalised float, with batched random crop and flip.

    The random numbers come from a generator on the training device, seeded per epoch, so that a
    resumed run draws the same augmentations and nothing is copied from the host.
    """

    def __init__(self, mean: list[float], std: list[float], *, augment: bool, flip: bool, pad: int,
                 device: torch.device, channels_last: bool, size: int | None = None):
        self.size = size  # resize to size x size first (images smaller than a pretrained backbone's input)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.augment, self.flip, self.pad = augment, flip, pad
        self.device = device
        self.channels_last = channels_last
        self.generator: torch.Generator | None = None

    def seed(self, seed: int) -> None:
        """Seed the crop and flip draws (the trainer does it each epoch, so a resume draws the same)."""
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        x = (x.float() / 255.0 - self.mean) / self.std
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if train and self.augment:
            x = self._crop_flip(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.pad
        g = self.generator
        if p:
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=g)
            dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=g)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            chan = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        if self.flip:
            flip = torch.rand(b, device=x.device, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def channel_stats(images: np.ndarray, *, max_images: int = 10000, seed: int = 0) -> tuple[list, list]:
    """Per-channel mean and std of uint8 ``(N, H, W, C)`` images, in [0, 1] units (on a sample)."""
    if len(images) > max_images:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))]
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return mean.tolist(), std.tolist()


def augmentation_for(config: TrainConfig, image_height: int) -> dict:
    """The crop and flip of a run: ``augment`` as ``config`` says, else as its source kind's defaults in
    :data:`csl_core.data.SOURCES` (the demo: none; Fashion-MNIST: no flip); the crop pads an eighth of the
    (network input's) height. The one place the rule lives: the trainer and the memorisation estimator read it."""
    kind = source_kind(config.data)
    augment = bool(config.augment if config.augment is not None else kind.augment)
    return {"augment": augment, "flip": bool(augment and kind.flip), "pad": max(1, image_height // 8) if augment else 0}


def preprocess_for(config: TrainConfig, meta: dict, image_height: int, device: torch.device, *,
                   channels_last: bool) -> Preprocess:
    """The preprocessing of a run: ``meta``'s normalisation; crop and flip by :func:`augmentation_for`. A run
    fine-tuning a pretrained backbone (``meta["input_size"]``) resizes its images to the backbone's input size."""
    size = meta.get("input_size")
    return Preprocess(meta["normalisation"]["mean"], meta["normalisation"]["std"],
                      **augmentation_for(config, size or image_height), device=device, channels_last=channels_last,
                      size=size)
