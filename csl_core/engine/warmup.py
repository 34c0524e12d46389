"""A short warm-up training whose mistakes say which classes a model confuses: the source of
``--noise-kind confusable`` when no class map is given. Side effects (training) live here, at the
edge; the noise itself is injected by the pure :func:`csl_core.data.noise.inject_label_noise`."""
from __future__ import annotations

import numpy as np
import torch

from ..config import TrainConfig
from ..data import ImageSource, IndexedDataset, confusable_map, load_source, parse_class_map
from ..errors import InputError
from .models import build_model

WARMUP_EPOCHS = 2
WARMUP_SAMPLES = 10000


def warmup_confusion(source: ImageSource, *, image_index: np.ndarray | None = None, epochs: int = WARMUP_EPOCHS,
                     max_samples: int = WARMUP_SAMPLES, seed: int = 0, device: str | torch.device = "cpu",
                     batch_size: int = 128) -> np.ndarray:
    """``(C, C)`` counts of held-out predictions (row = label, column = prediction) after a short training.

    A seeded sample of at most ``max_samples`` of ``image_index`` (default: every image) is split in
    two halves: the small CNN trains ``epochs`` epochs on one half, without augmentation, and predicts
    the other, so the confusions are those of unseen images.
    """
    from .preprocess import Preprocess, channel_stats
    from .runtime import make_loader
    from .step import train_step

    rng = np.random.default_rng(seed)
    rows = np.arange(len(source)) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if len(rows) > max_samples:
        rows = rng.choice(rows, size=max_samples, replace=False)
    rows = rng.permutation(rows)
    if len(rows) < 4:
        raise InputError(f"a warm-up for confusable noise needs at least 4 images, got {len(rows)}")
    fit, held_out = rows[: len(rows) // 2], rows[len(rows) // 2:]
    num_classes = len(source.classes)
    device = torch.device(device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_model("small-cnn", in_channels=source.channels, num_classes=num_classes).to(device)
        mean, std = channel_stats(source.images[np.sort(fit)])
        preprocess = Preprocess(mean, std, augment=False, flip=False, pad=0, device=device, channels_last=False)
        fit_set = IndexedDataset(source.images, fit, source.labels[fit])
        steps = epochs * -(-len(fit) // batch_size)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps, pct_start=0.25)
        model.train()
        for epoch in range(epochs):
            for x, y, _ in make_loader(fit_set, batch_size=batch_size, shuffle=True, seed=seed + epoch):
                train_step(model, preprocess(x.to(device), train=True), y.to(device), optimizer, scheduler)
        model.eval()
        predicted = []
        held_set = IndexedDataset(source.images, held_out, source.labels[held_out])
        with torch.no_grad():
            for x, _, _ in make_loader(held_set, batch_size=512, shuffle=False, seed=0):
                predicted.append(model(preprocess(x.to(device), train=False)).argmax(1).cpu())
    finally:
        torch.random.set_rng_state(generator_state)
    predicted_labels = torch.cat(predicted).numpy()
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (source.labels[held_out], predicted_labels), 1)
    return counts


def resolve_noise_map(config: TrainConfig, device: torch.device, *, progress: bool = False):
    """Turn ``config.noise_map`` into the stored list of class targets: parse a text map against the
    class names, or, for confusable noise without a map, learn one from a short warm-up training.
    Returns the loaded source when it had to be read (so that it is not read twice), else ``None``."""
    if not config.inject_noise or config.noise_kind == "symmetric" or isinstance(config.noise_map, list):
        return None
    if config.noise_map is None and config.noise_kind == "pairflip":
        return None
    loaded = load_source(config.data, image_size=config.image_size, download=config.download, progress=progress)
    source = loaded[0]
    if isinstance(config.noise_map, str):
        config.noise_map = parse_class_map(config.noise_map, source.classes).tolist()
    else:
        confusion = warmup_confusion(source, seed=config.seed, device=device)
        config.noise_map = confusable_map(confusion).tolist()
    return loaded
