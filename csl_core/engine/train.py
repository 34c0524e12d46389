"""The training loop: one ordinary run that records every sample's loss, with checkpoints and resume.

A training is set up (:func:`_set_up`), resumed from its checkpoint (:func:`_resume`), then each epoch is
trained (:func:`_train_epoch`, one :func:`~csl_core.engine.step.train_step` per batch) and recorded
(:func:`_record_epoch`); :func:`predict` (re-exported here) lives in :mod:`csl_core.engine.step`."""
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

from .. import __version__
from ..config import TrainConfig, training_set_for
from ..data import DataError, TrainingSet
from ..run.duplicates import write_fingerprints
from ..run.folders import run_lock
from ..run.layout import META
from ..run.store import RunError, RunStore
from .allocator import keep_freed_memory
from .distributed import DistributedContext, setup_distributed
from .models import (
    TORCHVISION_PREFIX,
    backbone_preset,
    backbone_weights_file,
    build_model,
    load_backbone_weights,
    resolve_model_name,
)
from .preprocess import channel_stats, preprocess_for
from .runtime import autocast_dtype, build_optimizer, epoch_seed, make_loader, resolve_device, use_channels_last
from .step import predict, score_pass, train_step
from .tracker import EPOCH_FIELDS, CSLTracker
from .warmup import resolve_noise_map


class Callbacks(Protocol):
    """What :func:`train` tells its caller (a progress bar, the background job) and asks it."""

    def on_start(self, info: dict) -> None:
        """Training starts: ``info`` holds epochs, start_epoch, batches, device, model, samples."""

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        """Batch ``batch`` (1-based) of ``batches`` of epoch ``epoch`` (0-based) is done."""

    def on_epoch(self, epoch: int, summary: dict) -> None:
        """Epoch ``epoch`` (0-based) is written; ``summary`` holds seconds, loss, accuracy, lr."""

    def should_stop(self) -> bool:
        """Polled after every batch: ``True`` ends training cleanly (the run stays resumable)."""


class _Silent:
    def on_start(self, info): pass
    def on_batch(self, epoch, batch, batches): pass
    def on_epoch(self, epoch, summary): pass
    def should_stop(self): return False


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, the epochs finished, whether it was stopped early, the
    held-out accuracy (``None`` without a test split or when stopped) and each epoch's seconds."""

    run: RunStore
    finished_epochs: int
    stopped: bool
    test_accuracy: float | None = None
    timings: list[float] = field(default_factory=list)


def prepare_run(config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = False,
                training_set: TrainingSet | None = None) -> tuple[RunStore, TrainingSet, TrainConfig]:
    """Create (or reopen, for ``resume``) the run folder ``out`` and rebuild its training set.

    A given ``training_set`` (e.g. relabelled or with rows dropped, as the benchmark builds them) is
    trained on instead of the one ``config`` describes; ``config.data`` still names its source.
    """
    out = Path(out)
    if resume:
        store = RunStore(out)
        problems = store.problems(deep=True)
        if problems:
            raise RunError(f"{out} cannot be resumed: " + "; ".join(problems))
        stored = TrainConfig.from_run(store.meta.get("config"), store.path / META)
        stored.download = config.download  # the person resuming may allow it; a run folder cannot
        # The data, model and schedule are the run's own; only where and how fast it runs may change.
        stored.device = config.device
        stored.num_workers = config.num_workers
        config = stored
        if training_set is None:
            training_set = store.training_set(download=config.download, progress=progress)
        else:
            store.check_samples(training_set)
        return store, training_set, config
    config.validate()
    if (out / META).exists():  # said before the data is loaded, which may take minutes
        raise RunError(f"{out} already holds a run; resume it (--resume) or choose another --out")
    preset = None
    if config.fine_tunes:  # the weights' own input size and normalisation
        backbone = resolve_model_name(config.model, 0, pretrained=True)
        preset = backbone_preset(backbone)
        if config.image_size is None:
            config.image_size = preset["image_size"]
        if config.weights is not None:
            config.weights = str(Path(config.weights).expanduser().resolve())
            if not Path(config.weights).is_file():
                raise FileNotFoundError(f"--weights {config.weights}: no such file")
        else:
            backbone_weights_file(backbone)  # downloaded (or found offline) before the run folder is made
    device = resolve_device(config.device)
    if training_set is None:
        loaded = resolve_noise_map(config, device, progress=progress)
        training_set = training_set_for(config, progress=progress, loaded=loaded)
    if len(training_set.classes) < 2:  # said before the run folder exists, so no empty run is left listed
        raise DataError(f"{config.data}: a run needs at least two classes, found {training_set.classes}; CSL ranks "
                        "samples by how hard their label is to learn against the others")
    height, width = training_set.source.image_size
    model_name = resolve_model_name(config.model, max(height, width), pretrained=config.fine_tunes)
    if preset is not None:
        channels = training_set.source.channels
        mean, std = (preset["mean"], preset["std"]) if channels == 3 else (
            [float(np.mean(preset["mean"]))] * channels, [float(np.mean(preset["std"]))] * channels)
    else:
        mean, std = channel_stats(training_set.source.images)
    meta = {
        "name": out.name,
        "source": config.data,
        "classes": training_set.classes,
        "model": model_name,
        "config": asdict(config),
        "image_shape": [training_set.source.channels, height, width],
        "normalisation": {"mean": mean, "std": std},
        "input_size": config.image_size if preset is not None else None,
        "has_ground_truth": training_set.has_ground_truth,
        "has_test_split": training_set.test is not None,
        "device": str(device),
        "versions": {"csl_core": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    fields_ = EPOCH_FIELDS + (("eval_loss",) if config.eval_pass else ())
    store = RunStore.create(out, meta=meta, samples=training_set.samples, epochs=config.epochs, fields=fields_)
    write_fingerprints(store, training_set.source.images, training_set.image_index)  # duplicates, later
    store.update_report(skipped=training_set.source.skipped, notes=training_set.source.notes,
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
        # The lock comes first: two trainings started into one folder at once must not both write it.
        with run_lock(out) if not resume else RunStore(out).lock():
            store, training_set, config = prepare_run(config, out, resume=resume, progress=progress,
                                                      training_set=training_set)
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
    with run_lock(out) if distributed.is_main else nullcontext():
        if distributed.is_main:
            store, training_set, config = prepare_run(config, out, resume=resume, progress=progress,
                                                      training_set=training_set)
        distributed.barrier()
        if not distributed.is_main:
            store, training_set, config = prepare_run(config, out, resume=True, training_set=training_set)
        result = _train_locked(config, store, training_set, callbacks, distributed=distributed)
    distributed.barrier()  # the other ranks leave once rank 0 has written the last files
    return result


@dataclass
class _Training:
    """What one training holds between its steps: set up by :func:`_set_up`, advanced by :func:`_train_epoch`."""

    config: TrainConfig
    store: RunStore
    training_set: TrainingSet
    device: torch.device
    rank: int
    writes: bool  # under torchrun, rank 0 alone writes the run folder
    model: torch.nn.Module
    forward: torch.nn.Module  # the model as trained: under DDP and torch.compile when asked
    preprocess: object
    dataset: object
    sampler: object
    eval_sampler: object
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: object
    tracker: CSLTracker
    eval_tracker: CSLTracker | None
    scaler: object
    amp_dtype: torch.dtype | None
    distributed: DistributedContext | None


def _train_locked(config: TrainConfig, store: RunStore, training_set: TrainingSet,
                  callbacks: Callbacks, *, distributed: DistributedContext | None = None) -> TrainResult:
    run = _set_up(config, store, training_set, distributed)
    start_epoch = _resume(run)
    callbacks.on_start({"epochs": config.epochs, "start_epoch": start_epoch, "batches": run.steps_per_epoch,
                        "device": str(run.device), "model": store.meta["model"], "samples": len(run.dataset)})
    timings = [e["seconds"] for e in store.report().get("epochs", []) if e["epoch"] < start_epoch]
    stopped = False
    for epoch in range(start_epoch, config.epochs):
        began = time.perf_counter()
        stopped = _train_epoch(run, epoch, callbacks)
        if stopped:
            break
        summary = _record_epoch(run, epoch, began)
        timings.append(summary["seconds"])
        callbacks.on_epoch(epoch, summary)
    test_accuracy = None
    if not stopped and run.writes:
        test_accuracy = _finish(run.model, training_set, run.preprocess, store, run.device, config)
    return TrainResult(store, store.finished_epochs, stopped, test_accuracy, timings)


def _set_up(config: TrainConfig, store: RunStore, training_set: TrainingSet,
            distributed: DistributedContext | None) -> _Training:
    """The model (with the backbone's weights when fine-tuning a new run), preprocessing, loader sampler,
    optimiser, schedule and trackers of a training, on its device."""
    meta = store.meta
    device = distributed.device if distributed is not None else resolve_device(config.device)
    rank = distributed.rank if distributed is not None else 0
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on re-allocated activations (see allocator.py)
    torch.manual_seed(config.seed)
    num_classes = len(training_set.classes)
    model = build_model(meta["model"], in_channels=training_set.source.channels, num_classes=num_classes)
    if config.fine_tunes and store.finished_epochs == 0 and meta["model"].startswith(TORCHVISION_PREFIX):
        load_backbone_weights(model, meta["model"], weights_file=config.weights)  # a resume takes the checkpoint's
    amp_dtype = autocast_dtype(device, config.amp)
    channels_last = use_channels_last(device, amp_dtype, config.channels_last)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    preprocess = preprocess_for(config, meta, training_set.source.image_size[0], device, channels_last=channels_last)
    dataset = training_set.dataset()
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
    return _Training(config, store, training_set, device, rank, rank == 0, model, forward, preprocess, dataset,
                     sampler, eval_sampler, steps_per_epoch, optimizer, scheduler, tracker, eval_tracker, scaler,
                     amp_dtype, distributed)


def _resume(run: _Training) -> int:
    """Load the checkpoint of a resumed run into the training; returns the epoch to start from."""
    store = run.store
    finished = store.finished_epochs
    state = store.load_checkpoint(map_location=run.device) if finished else None
    # Each epoch is written before its checkpoint, so a kill in between leaves the checkpoint one epoch
    # behind: that epoch is trained again (same seed, same numbers) and a kill loses at most one epoch.
    start_epoch = int(state["epoch"]) if state is not None else 0
    if start_epoch not in (finished, finished - 1):
        raise RunError(f"{store.path}: the checkpoint is from epoch {start_epoch} but {finished} epochs are "
                       "recorded; the run cannot be resumed, start a new one")
    if start_epoch < finished and run.writes:
        store.update_meta(finished_epochs=start_epoch)
    if state is not None:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if run.writes:  # the running totals live on rank 0 (see CSLTracker.all_reduce_epoch)
            run.tracker.load_state_dict(state["tracker"])
    return start_epoch


def _train_epoch(run: _Training, epoch: int, callbacks: Callbacks) -> bool:
    """Train epoch ``epoch`` batch by batch; returns True when the caller asked to stop midway."""
    config, device = run.config, run.device
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    loader = make_loader(run.dataset, batch_size=config.batch_size, shuffle=True,
                         seed=epoch_seed(config.seed, epoch), num_workers=config.num_workers,
                         pin_memory=device.type == "cuda", sampler=run.sampler)
    run.preprocess.seed(epoch_seed(config.seed, epoch) + 1 + run.rank)
    run.model.train()
    for batch, (x, y, index) in enumerate(loader):
        x = run.preprocess(x.to(device, non_blocking=True), train=True)
        train_step(run.forward, x, y.to(device, non_blocking=True), run.optimizer, run.scheduler,
                   tracker=run.tracker, index=index, scaler=run.scaler, amp_dtype=run.amp_dtype)
        callbacks.on_batch(epoch, batch + 1, run.steps_per_epoch)
        if callbacks.should_stop():
            return True
    return False


def _record_epoch(run: _Training, epoch: int, began: float) -> dict:
    """The epoch's arrays (gathered across ranks), the eval pass when asked, and, on the writing rank, the
    epoch and a checkpoint written into the run folder; returns the epoch's summary."""
    config, distributed = run.config, run.distributed
    if distributed is not None:
        run.tracker.all_reduce_epoch()
    record = run.tracker.end_epoch()
    eval_seconds = 0.0
    if run.eval_tracker is not None:
        eval_began = time.perf_counter()
        score_pass(run.forward, run.dataset, run.preprocess, run.eval_tracker, run.device, config, run.amp_dtype,
                   sampler=run.eval_sampler)
        if distributed is not None:
            run.eval_tracker.all_reduce_epoch()
        record["eval_loss"] = run.eval_tracker.end_epoch()["loss"]
        eval_seconds = time.perf_counter() - eval_began
    summary = {"seconds": time.perf_counter() - began, "loss": float(np.nanmean(record["loss"])),
               "accuracy": float(np.mean(record["correct"])), "lr": float(run.scheduler.get_last_lr()[0]),
               "eval_seconds": eval_seconds}
    if run.writes:
        run.store.write_epoch(epoch, record, probabilities=run.tracker.mean_probabilities(), timing=summary)
        run.store.save_checkpoint({"epoch": epoch + 1, "model": run.model.state_dict(),
                                   "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                                   "tracker": run.tracker.state_dict()})
    return summary


def _finish(model, training_set, preprocess, store: RunStore, device, config) -> float | None:
    """After the last epoch: penultimate-layer embeddings (for duplicate search) and test accuracy."""
    test_accuracy = embeds = None
    if config.compute_embeddings:
        _, embeds = predict(model, training_set.dataset(), preprocess, device, embeddings=True,
                            num_workers=config.num_workers)
    test = training_set.test_dataset()
    if test is not None:
        logits = predict(model, test, preprocess, device, num_workers=config.num_workers)
        test_accuracy = float((logits.argmax(1) == training_set.test.labels).mean())
    # scores, class averages, evaluations kept too: the dashboard then opens the run at once
    store.finish(embeddings=embeds, test_accuracy=test_accuracy)
    return test_accuracy
