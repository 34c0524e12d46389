"""The training loop: one ordinary run that records every sample's loss, with checkpoints and resume."""
from __future__ import annotations

import math
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..config import TrainConfig, training_set_for
from ..data import TrainingSet, confusable_map, load_source, parse_class_map
from ..run.files import atomic_save_npy
from ..run.store import RunError, RunStore
from .allocator import keep_freed_memory
from .distributed import DistributedContext, setup_distributed
from .models import build_model, resolve_model_name
from .tracker import EPOCH_FIELDS, CSLTracker
from .warmup import warmup_confusion


class Callbacks(Protocol):
    def on_start(self, info: dict) -> None: ...
    def on_batch(self, epoch: int, batch: int, batches: int) -> None: ...
    def on_epoch(self, epoch: int, summary: dict) -> None: ...
    def should_stop(self) -> bool: ...


class _Silent:
    def on_start(self, info): pass
    def on_batch(self, epoch, batch, batches): pass
    def on_epoch(self, epoch, summary): pass
    def should_stop(self): return False


@dataclass
class TrainResult:
    run: RunStore
    finished_epochs: int
    stopped: bool
    test_accuracy: float | None = None
    timings: list[float] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple's MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but Apple's MPS is not available; use --device auto or cpu")
    return device


def default_augment(spec: str) -> bool:
    """Random crop + flip for natural images (CIFAR, the user's files); none for digits."""
    kind = spec.split(":", 1)[0].lower()
    return kind not in ("demo",)


class Preprocess:
    """uint8 ``(B, C, H, W)`` on the device -> normalised float, with batched random crop and flip.

    The random numbers come from a generator on the training device, seeded per epoch, so that a
    resumed run draws the same augmentations and nothing is copied from the host.
    """

    def __init__(self, mean: list[float], std: list[float], *, augment: bool, flip: bool, pad: int,
                 device: torch.device, channels_last: bool):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.augment, self.flip, self.pad = augment, flip, pad
        self.device = device
        self.channels_last = channels_last
        self.generator: torch.Generator | None = None

    def seed(self, seed: int) -> None:
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        x = (x.float() / 255.0 - self.mean) / self.std
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


def make_loader(dataset, *, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                pin_memory: bool = False, sampler=None) -> torch.utils.data.DataLoader:
    """Batches of ``(x, y, index)`` fetched whole from the dataset (no per-sample collation)."""
    if sampler is None:
        if shuffle:
            generator = torch.Generator()
            generator.manual_seed(seed)
            sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
        else:
            sampler = torch.utils.data.SequentialSampler(dataset)
    batches = torch.utils.data.BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return torch.utils.data.DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=False)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def build_optimizer(model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int):
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.25)
    elif config.schedule == "step":
        milestones = [int(config.epochs * 0.6) * steps_per_epoch, int(config.epochs * 0.8) * steps_per_epoch]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


def _amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """Mixed precision: on CUDA by default; on a CPU by default where it has bf16 matrix units (AMX or
    AVX512-BF16: 2.4x the images a second of the airbench CNN in fp32 on this project's Xeon)."""
    if amp is False:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (amp or _cpu_has_bf16_units()):
        return torch.bfloat16
    return None


def _cpu_has_bf16_units() -> bool:
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except RuntimeError:
        return False


def _resolve_noise_map(config: TrainConfig, device: torch.device, *, progress: bool = False):
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


def prepare_run(config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = False,
                training_set: TrainingSet | None = None) -> tuple[RunStore, TrainingSet, TrainConfig]:
    """Create (or reopen, for ``resume``) the run folder ``out`` and rebuild its training set.

    A given ``training_set`` (e.g. relabelled or with rows dropped, as the benchmark builds them) is
    trained on instead of the one ``config`` describes; ``config.data`` still names its source.
    """
    out = Path(out)
    if resume:
        store = RunStore(out)
        stored = TrainConfig.from_dict(store.meta["config"])
        # The data, model and schedule are the run's own; only where and how fast it runs may change.
        stored.device = config.device
        stored.num_workers = config.num_workers
        config = stored
        if training_set is None:
            training_set = training_set_for(config, progress=progress)
        if list(training_set.samples["sample_id"].astype(str)) != list(store.samples()["sample_id"].astype(str)):
            raise RunError(f"{out}: the data source no longer yields the samples this run started with; "
                           "start a new run instead of resuming")
        return store, training_set, config
    config.validate()
    device = resolve_device(config.device)
    if training_set is None:
        loaded = _resolve_noise_map(config, device, progress=progress)
        training_set = training_set_for(config, progress=progress, loaded=loaded)
    height, width = training_set.source.image_size
    model_name = resolve_model_name(config.model, max(height, width))
    mean, std = channel_stats(training_set.source.images)
    meta = {
        "name": out.name,
        "source": config.data,
        "classes": training_set.classes,
        "model": model_name,
        "config": asdict(config),
        "image_shape": [training_set.source.channels, height, width],
        "normalisation": {"mean": mean, "std": std},
        "has_ground_truth": training_set.has_ground_truth,
        "has_test_split": training_set.test is not None,
        "device": str(device),
        "versions": {"csl_core": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    fields_ = EPOCH_FIELDS + (("eval_loss",) if config.eval_pass else ())
    store = RunStore.create(out, meta=meta, samples=training_set.samples, epochs=config.epochs, fields=fields_)
    store.update_report(skipped=training_set.source.skipped,
                        counts={"listed": len(training_set.source) + len(training_set.source.skipped),
                                "used": len(training_set), "skipped": len(training_set.source.skipped),
                                "not_in_subset": len(training_set.source) - len(training_set)})
    return store, training_set, config


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, callbacks: Callbacks | None = None,
          progress: bool = False, training_set: TrainingSet | None = None) -> TrainResult:
    """Train ``config`` into the run folder ``out``, recording every sample's loss each epoch.

    With ``resume``, continue ``out`` from its last finished epoch (the same seed gives the same CSL
    as an uninterrupted run). ``callbacks.should_stop()`` is polled after every batch; a stop ends
    cleanly and leaves the run resumable.
    """
    callbacks = callbacks or _Silent()
    distributed = setup_distributed(config.device)
    if distributed is None:
        store, training_set, config = prepare_run(config, out, resume=resume, progress=progress,
                                                  training_set=training_set)
        with store.lock():
            return _train_locked(config, store, training_set, callbacks)
    try:
        return _train_distributed(config, out, distributed, resume=resume, callbacks=callbacks,
                                  progress=progress, training_set=training_set)
    finally:
        distributed.close()


def _train_distributed(config: TrainConfig, out: str | Path, distributed: DistributedContext, *, resume: bool,
                       callbacks: Callbacks, progress: bool, training_set: TrainingSet | None) -> TrainResult:
    """One rank of a ``torchrun`` job: rank 0 creates (or reopens) the run folder and holds its lock;
    the other ranks reopen it once it exists, as a resume would, which also checks they see the same data."""
    if distributed.is_main:
        store, training_set, config = prepare_run(config, out, resume=resume, progress=progress,
                                                  training_set=training_set)
    distributed.barrier()
    if not distributed.is_main:
        store, training_set, config = prepare_run(config, out, resume=True, training_set=training_set)
    with store.lock() if distributed.is_main else nullcontext():
        result = _train_locked(config, store, training_set, callbacks, distributed=distributed)
    distributed.barrier()  # the other ranks leave once rank 0 has written the last files
    return result


def _train_locked(config: TrainConfig, store: RunStore, training_set: TrainingSet,
                  callbacks: Callbacks, *, distributed: DistributedContext | None = None) -> TrainResult:
    meta = store.meta
    device = distributed.device if distributed is not None else resolve_device(config.device)
    rank = distributed.rank if distributed is not None else 0
    writes = rank == 0  # under torchrun, rank 0 alone writes the run folder
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on re-allocated activations (see allocator.py)
    torch.manual_seed(config.seed)
    num_classes = len(training_set.classes)
    channels = training_set.source.channels
    model = build_model(meta["model"], in_channels=channels, num_classes=num_classes)
    amp_dtype = _amp_dtype(device, config.amp)
    # channels-last pays on CUDA and under bf16 on a CPU (1.7x the airbench CNN's images a second here)
    channels_last = (config.channels_last if config.channels_last is not None
                     else device.type == "cuda" or amp_dtype is not None)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    augment = config.augment if config.augment is not None else default_augment(config.data)
    height = training_set.source.image_size[0]
    preprocess = Preprocess(meta["normalisation"]["mean"], meta["normalisation"]["std"], augment=augment,
                            flip=augment and not config.data.lower().startswith("fashion"),
                            pad=max(1, height // 8) if augment else 0, device=device,
                            channels_last=channels_last)
    dataset = training_set.dataset()
    pin = device.type == "cuda"
    # Under torchrun each rank trains on its share, padded to equal length; batch_size is per rank.
    sampler = eval_sampler = None
    if distributed is not None:
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=distributed.world_size, rank=rank,
                                                      shuffle=True, seed=config.seed)
        eval_sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=distributed.world_size,
                                                           rank=rank, shuffle=False)
    steps_per_epoch = math.ceil((len(sampler) if sampler is not None else len(dataset)) / config.batch_size)
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    tracker = CSLTracker(len(dataset), num_classes, device=device, keep_history=False)
    eval_tracker = CSLTracker(len(dataset), num_classes, device=device, keep_history=False,
                              track_probabilities=False) if config.eval_pass else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    forward = model
    if distributed is not None:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(forward) if config.compile else forward

    finished = store.finished_epochs
    state = store.load_checkpoint(map_location=device) if finished else None
    # Each epoch is written before its checkpoint, so a kill in between leaves the checkpoint one epoch
    # behind: that epoch is trained again (same seed, same numbers) and a kill loses at most one epoch.
    start_epoch = int(state["epoch"]) if state is not None else 0
    if start_epoch not in (finished, finished - 1):
        raise RunError(f"{store.path}: the checkpoint is from epoch {start_epoch} but {finished} epochs are "
                       "recorded; the run cannot be resumed, start a new one")
    if start_epoch < finished and writes:
        store.update_meta(finished_epochs=start_epoch)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if writes:  # the running totals live on rank 0 (see CSLTracker.all_reduce_epoch)
            tracker.load_state_dict(state["tracker"])
    callbacks.on_start({"epochs": config.epochs, "start_epoch": start_epoch, "batches": steps_per_epoch,
                        "device": str(device), "model": meta["model"], "samples": len(dataset)})
    timings = [e["seconds"] for e in store.report().get("epochs", []) if e["epoch"] < start_epoch]
    stopped = False
    for epoch in range(start_epoch, config.epochs):
        began = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = make_loader(dataset, batch_size=config.batch_size, shuffle=True,
                             seed=_epoch_seed(config.seed, epoch), num_workers=config.num_workers,
                             pin_memory=pin, sampler=sampler)
        preprocess.seed(_epoch_seed(config.seed, epoch) + 1 + rank)
        model.train()
        for batch, (x, y, index) in enumerate(loader):
            x = preprocess(x.to(device, non_blocking=True), train=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = forward(x)
                losses = F.cross_entropy(logits.float(), y, reduction="none")
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
            scheduler.step()
            callbacks.on_batch(epoch, batch + 1, steps_per_epoch)
            if callbacks.should_stop():
                stopped = True
                break
        if stopped:
            break
        if distributed is not None:
            tracker.all_reduce_epoch()
        record = tracker.end_epoch()
        eval_seconds = 0.0
        if eval_tracker is not None:
            eval_began = time.perf_counter()
            _score_pass(forward, dataset, preprocess, eval_tracker, device, config, amp_dtype,
                        sampler=eval_sampler)
            if distributed is not None:
                eval_tracker.all_reduce_epoch()
            record["eval_loss"] = eval_tracker.end_epoch()["loss"]
            eval_seconds = time.perf_counter() - eval_began
        seconds = time.perf_counter() - began
        timings.append(seconds)
        summary = {"seconds": seconds, "loss": float(np.nanmean(record["loss"])),
                   "accuracy": float(np.mean(record["correct"])), "lr": float(scheduler.get_last_lr()[0]),
                   "eval_seconds": eval_seconds}
        if writes:
            probabilities = tracker.mean_probabilities()
            store.write_epoch(epoch, record, probabilities=probabilities, timing=summary)
            store.save_checkpoint({"epoch": epoch + 1, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "tracker": tracker.state_dict()})
        callbacks.on_epoch(epoch, summary)
    test_accuracy = None
    if not stopped and writes:
        test_accuracy = _finish(model, training_set, preprocess, store, device, config, amp_dtype)
    return TrainResult(store, store.finished_epochs, stopped, test_accuracy, timings)


@torch.no_grad()
def _score_pass(model, dataset, preprocess, tracker: CSLTracker, device, config, amp_dtype,
                sampler=None) -> None:
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


def _finish(model, training_set, preprocess, store: RunStore, device, config, amp_dtype) -> float | None:
    """After the last epoch: penultimate-layer embeddings (for duplicate search) and test accuracy."""
    test_accuracy = None
    if config.compute_embeddings:
        _, embeds = predict(model, training_set.dataset(), preprocess, device, embeddings=True,
                            num_workers=config.num_workers)
        atomic_save_npy(store.path / "embeddings.npy", embeds.astype(np.float32))
    test = training_set.test_dataset()
    if test is not None:
        logits = predict(model, test, preprocess, device, num_workers=config.num_workers)
        test_accuracy = float((logits.argmax(1) == training_set.test.labels).mean())
    store.update_report(test_accuracy=test_accuracy)
    store.update_meta(completed=True)
    store.keep_derived()  # scores, class averages, evaluations: the dashboard then opens the run at once
    return test_accuracy
