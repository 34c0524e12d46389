"""Training-set surgery for the cleaning protocols (drop or relabel rows) and loading a run's trained model."""
from __future__ import annotations

import numpy as np
import torch

from ..data import TrainingSet
from ..engine.models import build_model
from ..engine.preprocess import Preprocess
from ..errors import InputError
from ..run.store import RunStore


def select_rows(training_set: TrainingSet, rows: np.ndarray, *, keep_test: bool = True) -> TrainingSet:
    """The training set restricted to ``rows`` (renumbered from 0), e.g. a fold or a cleaned set."""
    samples = training_set.samples.iloc[np.sort(np.asarray(rows, dtype=np.int64))].reset_index(drop=True)
    samples["index"] = np.arange(len(samples))
    return TrainingSet(spec=training_set.spec, source=training_set.source, samples=samples,
                       test=training_set.test if keep_test else None)


def relabel(training_set: TrainingSet, rows: np.ndarray, labels: np.ndarray) -> TrainingSet:
    """The training set with ``rows`` given ``labels``; the ground-truth columns follow."""
    samples = training_set.samples.copy()
    samples.loc[rows, "label"] = np.asarray(labels, dtype=np.int64)
    samples["class_name"] = [training_set.classes[c] for c in samples["label"]]
    if "true_label" in samples.columns:
        samples["is_mislabeled"] = samples["label"] != samples["true_label"]
    return TrainingSet(spec=training_set.spec, source=training_set.source, samples=samples, test=training_set.test)


def load_trained_model(store: RunStore, device: torch.device) -> tuple[torch.nn.Module, Preprocess]:
    """The model of a finished run folder and its eval-mode preprocessing (no augmentation)."""
    meta = store.meta
    channels = meta["image_shape"][0]
    model = build_model(meta["model"], in_channels=channels, num_classes=len(meta["classes"]))
    state = store.load_checkpoint(map_location=device)
    if state is None:
        raise InputError(f"{store.path} has no checkpoint to load a model from")
    model.load_state_dict(state["model"])
    model.to(device).eval()
    norm = meta["normalisation"]
    preprocess = Preprocess(norm["mean"], norm["std"], augment=False, flip=False, pad=0, device=device,
                            channels_last=False, size=meta.get("input_size"))
    return model, preprocess
