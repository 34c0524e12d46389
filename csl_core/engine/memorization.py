"""The stability estimate of memorisation (Feldman & Zhang) for a finished run, and its comparison.

``estimate_memorization(run, models=K, fraction=0.5)`` trains ``K`` models, each on a seeded random
``fraction`` of the run's training set, with the run's own model and recipe (architecture, epochs,
batch size, optimiser, schedule, augmentation, normalisation), and records each model's prediction on
every training sample. Each model trains with the engine's own step
(:func:`~csl_core.engine.step.train_step`) and building blocks (:func:`build_model`, :class:`Preprocess`,
:func:`build_optimizer`, :func:`make_loader`), without the tracker, run folder and checkpoints, whose
per-run cost would dominate models that train in a second. Models run in parallel processes, each
written to ``<run>/memorization/models/`` the moment it finishes, so the same call continues after a
kill. Then every score of the run is compared with the estimate (:func:`csl_core.analysis.memorization.compare_scores`).
"""
from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.memorization import (
    agreement_by_models,
    compare_scores,
    default_model_counts,
    stability_memorization,
    subset_mask,
)
from ..analysis.scores import available_scores, suspicion
from ..config import TrainConfig
from ..data import TrainingSet
from ..errors import InputError
from ..progress import progress_bar
from ..run.files import real_folder, temp_file_beside
from ..run.layout import MEMORIZATION, META, memorization_job_name
from ..run.memorization import MemorizationFolder
from ..run.store import RunError, RunStore

MEASURE = "correct"  # Feldman & Zhang's definition; the softmax variant is kept beside it


@dataclass
class MemorizationResult:
    """What one call produced: the per-sample estimate, the comparison (as written to ``comparison.json``)
    and how many models this call trained."""

    estimate: pd.DataFrame
    comparison: dict
    trained: int
    wall_seconds: float


def recipe_for(store: RunStore) -> dict:
    """The run's model and training recipe, resolved as the engine resolves it for this run (the crop and
    flip by :func:`~csl_core.engine.preprocess.augmentation_for`, the trainer's own rule)."""
    from .preprocess import augmentation_for

    meta = store.meta
    config = TrainConfig.from_run(meta["config"], store.path / META)
    size = meta.get("input_size")
    recipe = {"model": meta["model"], "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
              "momentum": config.momentum, "weight_decay": config.weight_decay, "schedule": config.schedule,
              **augmentation_for(config, size or int(meta["image_shape"][1])),
              "mean": meta["normalisation"]["mean"], "std": meta["normalisation"]["std"],
              "in_channels": int(meta["image_shape"][0]), "num_classes": len(meta["classes"])}
    if size:  # a fine-tuned backbone's input size, as the trainer resized to it
        recipe["size"] = int(size)
    if config.amp is not None:  # the run's own precision setting (default: the trainer's for the device)
        recipe["amp"] = bool(config.amp)
    return recipe


def estimate_memorization(run: str | Path | RunStore, *, models: int, fraction: float = 0.5, seed: int = 0,
                          workers: int = 1, threads: int = 1, device: str = "cpu",
                          training_set: TrainingSet | None = None, progress: bool = False) -> MemorizationResult:
    """Train the models of the stability estimate that ``run/memorization/`` lacks, then write the estimate
    and the comparison of every score of the run against it.

    ``models`` subset trainings on ``fraction`` of the samples each (seeded by ``seed`` and the model's
    number), ``workers`` processes at a time with ``threads`` torch threads each. ``training_set`` is the
    run's own training set when the run was trained on one built in code (tests, the benchmark); by
    default it is rebuilt from the run's settings and checked against its sample table.
    """
    store = run if isinstance(run, RunStore) else RunStore(run)
    if models < 2:
        raise InputError(f"the estimate needs at least 2 models (hundreds for a stable one), got {models}")
    if workers < 1 or threads < 1:
        raise InputError(f"workers and threads must be at least 1, got {workers} and {threads}")
    if not store.meta.get("completed"):
        raise RunError(f"{store.path}: the run is not complete; finish it (train --resume) before estimating "
                       "memorisation against it")
    began = time.perf_counter()
    samples = store.samples()
    if training_set is None:  # rebuilt from the run's stored settings, checked, sample by sample
        training_set = store.training_set(progress=progress)
    if list(training_set.samples["sample_id"].astype(str)) != list(samples["sample_id"].astype(str)):
        raise RunError(f"{store.path}: the data source no longer yields the samples this run was trained on")
    n = len(samples)
    subset_mask(n, fraction, seed, 0)  # checks the fraction before anything is written
    folder = MemorizationFolder(store)
    recipe = recipe_for(store)
    folder.begin({"fraction": fraction, "seed": seed, "num_samples": n, "recipe": recipe})
    with folder.lock():
        todo = []
        for k in range(models):
            found = folder.load_model(k, n)
            if found is None:
                todo.append(k)
            elif not np.array_equal(found["in_training"], subset_mask(n, fraction, seed, k)):
                raise RunError(f"{folder.model_file(k)} was trained on another subset than model {k} of these "
                               f"settings draws; delete {folder.path} to start the estimate over")
        job = {"images": training_set.source.images, "image_index": training_set.image_index,
               "labels": training_set.labels, "recipe": recipe, "fraction": fraction, "seed": seed,
               "device": device, "threads": threads, "folder": str(store.path)}
        _train_models(job, todo, workers=workers, total=models, progress=progress)
    result = _summarise(store, folder, models, recipe)
    wall = time.perf_counter() - began
    folder.append_log({"finished": time.time(), "models": models, "trained": len(todo), "workers": workers,
                       "threads": threads, "device": device, "wall_seconds": wall})
    return MemorizationResult(result["estimate"], result["comparison"], len(todo), wall)


def _train_models(job: dict, todo: list[int], *, workers: int, total: int, progress: bool) -> None:
    interactive = sys.stderr.isatty()
    bar = progress_bar(total=total, initial=total - len(todo), desc="memorisation models", unit="model",
                       disable=not progress, mininterval=0.5 if interactive else 30.0)
    try:
        if workers == 1 or len(todo) <= 1:
            _start_worker(job)
            try:
                for k in todo:
                    _train_one(k)
                    bar.update(1)
            finally:
                _job.clear()
            return
        # spawn, not fork: the parent may hold torch's thread pools, which a forked child inherits broken.
        # The arrays go to the workers through a file: a spawn payload larger than a pipe's buffer blocks the
        # parent for good when a child dies before reading it.
        # A fresh file (O_EXCL, a random name), never one a link at a known name points to.
        store = MemorizationFolder(job["folder"]).store
        real_folder(store.path / MEMORIZATION)
        fd, arrays_file = temp_file_beside(store.path / memorization_job_name(os.getpid()), suffix=".npz")
        arrays_file = Path(arrays_file)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{name: job[name] for name in _ARRAYS})
            light = {**{k: v for k, v in job.items() if k not in _ARRAYS}, "arrays": str(arrays_file)}
            pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn"),
                                       initializer=_start_worker, initargs=(light,))
            try:
                pending = {pool.submit(_train_one, k) for k in todo}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()  # a failed model stops the estimate with its error
                        bar.update(1)
            finally:
                # on an error or Ctrl-C the models in training finish and are kept; the others are not started
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            arrays_file.unlink(missing_ok=True)
    finally:
        bar.close()


# One training job per worker process, set once by the pool's initializer (the images travel once).
_job: dict = {}
_ARRAYS = ("images", "image_index", "labels")


def _start_worker(job: dict) -> None:
    import torch


    _job.clear()
    _job.update(job)
    if "arrays" in job:  # a pool worker: the arrays from the parent's file (plain arrays, never pickles)
        with np.load(job["arrays"], allow_pickle=False) as arrays:
            _job.update({name: arrays[name] for name in _ARRAYS})
    torch.set_num_threads(job["threads"])


def _train_one(k: int) -> None:
    """Train model ``k`` on its subset and keep its result on every sample."""
    began = time.perf_counter()
    job = _job
    n = len(job["labels"])
    in_training = subset_mask(n, job["fraction"], job["seed"], k)
    correct, p_given = train_subset_model(job["images"], job["image_index"], job["labels"], in_training,
                                          job["recipe"], device=job["device"],
                                          seed=job["seed"] * 1_000_003 + k)
    MemorizationFolder(job["folder"]).save_model(k, in_training, correct, p_given, time.perf_counter() - began)


def train_subset_model(images: np.ndarray, image_index: np.ndarray, labels: np.ndarray, in_training: np.ndarray,
                       recipe: dict, *, device: str = "cpu", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train one model with ``recipe`` (see :func:`recipe_for`) on the samples where ``in_training``, then
    predict every sample in eval mode without augmentation.

    ``images`` uint8 ``(M, H, W, C)``; sample ``i`` shows ``images[image_index[i]]`` with label
    ``labels[i]``. Returns bool ``(N,)`` whether the model predicts the given label and float32 ``(N,)``
    its softmax probability of the given label.
    """
    probabilities = subset_model_probabilities(images, image_index, labels, in_training, recipe, device=device,
                                               seed=seed)
    given = np.asarray(labels, dtype=np.int64)
    p_given = probabilities[np.arange(len(given)), given]
    return probabilities.argmax(1) == given, p_given.astype(np.float32)


def subset_model_probabilities(images: np.ndarray, image_index: np.ndarray, labels: np.ndarray,
                               in_training: np.ndarray, recipe: dict, *, device: str = "cpu", seed: int = 0,
                               predict_rows: np.ndarray | None = None) -> np.ndarray:
    """Train one model with ``recipe`` on the samples where ``in_training`` (as :func:`train_subset_model`)
    and return its softmax, float32 ``(N, C)``, on every sample (or only on ``predict_rows``, the other rows
    left 0)."""
    import torch

    from ..data import IndexedDataset
    from .allocator import keep_freed_memory
    from .models import build_model
    from .preprocess import Preprocess
    from .runtime import autocast_dtype, build_optimizer, make_loader, resolve_device, use_channels_last
    from .step import predict, train_step

    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        keep_freed_memory()
    # the trainer's precision and memory layout for this device (bf16 where a CPU has the units for it)
    amp_dtype = autocast_dtype(torch_device, recipe.get("amp"))
    channels_last = use_channels_last(torch_device, amp_dtype)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    torch.manual_seed(seed)
    model = build_model(recipe["model"], in_channels=recipe["in_channels"], num_classes=recipe["num_classes"])
    model = model.to(torch_device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    preprocess = Preprocess(recipe["mean"], recipe["std"], augment=recipe["augment"], flip=recipe["flip"],
                            pad=recipe["pad"], device=torch_device, channels_last=channels_last,
                            size=recipe.get("size"))
    rows = np.flatnonzero(in_training)
    subset = IndexedDataset(images, image_index[rows], labels[rows])
    config = TrainConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                         momentum=recipe["momentum"], weight_decay=recipe["weight_decay"], schedule=recipe["schedule"])
    optimizer, scheduler = build_optimizer(model, config, math.ceil(len(rows) / config.batch_size))
    for epoch in range(config.epochs):
        epoch_seed = (seed * 7919 + epoch * 104729 + 1) % (2**63)
        preprocess.seed(epoch_seed + 1)
        model.train()
        for x, y, _ in make_loader(subset, batch_size=config.batch_size, shuffle=True, seed=epoch_seed):
            x = preprocess(x.to(torch_device, non_blocking=True), train=True)
            train_step(model, x, y.to(torch_device, non_blocking=True), optimizer, scheduler, scaler=scaler,
                       amp_dtype=amp_dtype)
    labels = np.asarray(labels)
    rows = np.arange(len(labels)) if predict_rows is None else np.asarray(predict_rows, dtype=np.int64)
    logits = torch.from_numpy(predict(model, IndexedDataset(images, image_index[rows], labels[rows]), preprocess,
                                      torch_device))
    predicted = torch.softmax(logits, dim=1).numpy()
    if predict_rows is None:
        return predicted
    probabilities = np.zeros((len(labels), recipe["num_classes"]), dtype=np.float32)
    probabilities[rows] = predicted
    return probabilities


def _summarise(store: RunStore, folder: MemorizationFolder, models: int, recipe: dict) -> dict:
    """The estimate from models ``0..models-1``, every score against it, the estimator's noise, the cost."""
    n = store.num_samples
    loaded = [folder.load_model(k, n) for k in range(models)]
    missing = [k for k, m in enumerate(loaded) if m is None]
    if missing:
        raise RunError(f"{folder.path}: model(s) {missing[:5]} have no readable result; run the command again")
    in_training = np.stack([m["in_training"] for m in loaded])
    correct = np.stack([m["correct"] for m in loaded]).astype(np.float64)
    p_given = np.stack([m["p_given"] for m in loaded]).astype(np.float64)
    estimate = stability_memorization(in_training, correct)
    estimate["memorization_p_given"] = stability_memorization(in_training, p_given)["memorization"]
    scores = store.scores()
    methods = {method: suspicion(scores, method) for method in available_scores(scores)}
    table = compare_scores(methods, estimate["memorization"].to_numpy())
    table_p_given = compare_scores(methods, estimate["memorization_p_given"].to_numpy())
    noise = agreement_by_models(in_training, correct, methods["csl"], default_model_counts(models))
    epochs = store.report().get("epochs", [])
    reference_seconds = float(sum(e["seconds"] - e.get("eval_seconds", 0.0) for e in epochs))
    model_seconds = [m["seconds"] for m in loaded]
    comparison = {
        "models": models, "fraction": folder.settings()["fraction"], "measure": MEASURE,
        "recipe": {k: v for k, v in recipe.items() if k not in ("mean", "std")},
        "samples": n, "table": table.to_dict("records"), "table_p_given": table_p_given.to_dict("records"),
        "by_models": noise.to_dict("records"),
        "cost": {"reference_training_seconds": reference_seconds, "model_seconds_total": float(sum(model_seconds)),
                 "model_seconds_median": float(np.median(model_seconds)),
                 "work_ratio": float(sum(model_seconds) / reference_seconds) if reference_seconds > 0 else None},
        "written": time.time(),
    }
    folder.write_estimate(estimate)
    folder.write_comparison(comparison)
    return {"estimate": estimate, "comparison": comparison}
