"""Hugging Face ``transformers.Trainer``: per-sample loss of an image classifier, recorded in the training
step, and a run folder written epoch by epoch (``pip install 'csl-clean[hf]'``).

A ``TrainerCallback`` sees no per-sample losses, so two pieces work together: :class:`CSLRecorder` (the
callback: it holds the tracker and writes the run folder) and :class:`CSLLossMixin` (a ``compute_loss``
that computes cross-entropy per sample and hands it to the recorder). :class:`CSLTrainer` is
``Trainer`` with the mixin::

    recorder = CSLRecorder("runs/mine", labels=labels, classes=classes, paths=paths)
    trainer = CSLTrainer(model=model, args=args, train_dataset=dataset, callbacks=[recorder])
    trainer.train()

Each training example carries its dataset position under ``"index"`` (an integer in ``[0, N)``) beside
``pixel_values`` and ``labels``; the mixin takes it out before the model sees the batch, and keeps the
column from being dropped as unused. Single-label classification only (``logits`` of shape ``(B, C)``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    from transformers import Trainer, TrainerCallback
except ImportError:
    raise ImportError("csl_core.integrations.huggingface needs transformers: pip install transformers "
                      "(or pip install 'csl-clean[hf]')") from None

from ..engine.tracker import CSLTracker
from ..errors import InputError
from ..run.writer import RunWriter
from . import sample_table

__all__ = ["INDEX_KEY", "CSLLossMixin", "CSLRecorder", "CSLTrainer"]

INDEX_KEY = "index"


class CSLRecorder(TrainerCallback):
    """A ``TrainerCallback`` that writes the run folder ``run_dir`` from the losses :class:`CSLLossMixin`
    records.

    Parameters
    ----------
    run_dir:
        The run folder to create (on the main process).
    classes, labels, paths, images, samples:
        The sample table, as for :class:`~csl_core.run.writer.RunWriter`: ``labels`` ``(N,)`` in the order
        of the ``index`` each example carries, ``paths`` or ``images`` for the dashboard.
    model_name:
        Shown by the dashboard; default the model's class name.
    """

    def __init__(self, run_dir: str | Path, *, classes: Sequence[str], labels: Sequence[int] | None = None,
                 paths: Sequence[str] | None = None, images: np.ndarray | None = None, samples=None,
                 model_name: str | None = None):
        self.run_dir = Path(run_dir)
        self.classes = list(classes)
        self._table, self.num_samples = sample_table("CSLRecorder", labels=labels, paths=paths, images=images,
                                                     samples=samples)
        self.model_name = model_name
        self.tracker: CSLTracker | None = None
        self.writer: RunWriter | None = None

    def record(self, index: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
               losses: torch.Tensor) -> None:
        """One training batch: ``index`` ``(B,)`` sample positions, ``logits`` ``(B, C)``, per-sample ``losses``."""
        if self.tracker is None:
            self.tracker = CSLTracker(self.num_samples, len(self.classes), device=logits.device,
                                      keep_history=False)
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise InputError(f"logits of shape {tuple(logits.shape)}; expected (batch, {len(self.classes)}) for "
                             f"the {len(self.classes)} classes given to CSLRecorder")
        self.tracker.update(index, logits, labels, losses)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            epochs = max(1, int(np.ceil(args.num_train_epochs)))
            self.writer = RunWriter(self.run_dir, classes=self.classes, epochs=epochs, source="huggingface",
                                    model=self.model_name or type(model).__name__,
                                    extra_meta={"device": str(args.device)}, **self._table)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.tracker is None:
            return
        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.tracker.all_reduce_epoch()
        if self.writer is not None:
            self.writer.end_epoch(self.tracker)
        else:
            self.tracker.end_epoch()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None and not self.writer.closed:
            if self.writer.finished_epochs:
                self.writer.finish()
            else:
                self.writer.close()


class CSLLossMixin:
    """A ``compute_loss`` for ``transformers.Trainer`` subclasses: cross-entropy per sample, recorded by
    the :class:`CSLRecorder` among the Trainer's callbacks, and its mean returned to train on."""

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it over accumulation steps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        index = inputs.pop(INDEX_KEY, None)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise InputError("CSLLossMixin: the batch has no 'labels'")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        smoothing = float(getattr(self.args, "label_smoothing_factor", 0.0) or 0.0)
        losses = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=smoothing)  # (B,)
        if model.training:
            if index is None:
                raise InputError(f"CSLLossMixin: each training example needs its dataset position under "
                                 f"'{INDEX_KEY}' (an integer in [0, N)) beside 'pixel_values' and 'labels'")
            self._csl_recorder().record(index, logits, labels, losses)
        loss = losses.mean()
        return (loss, outputs) if return_outputs else loss

    def _csl_recorder(self) -> CSLRecorder:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, CSLRecorder):
                return callback
        raise InputError("CSLLossMixin: pass a CSLRecorder in the Trainer's callbacks")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if INDEX_KEY not in self._signature_columns:  # keep the index when unused columns are removed
            self._signature_columns.append(INDEX_KEY)


class CSLTrainer(CSLLossMixin, Trainer):
    """``transformers.Trainer`` that records every sample's loss through a :class:`CSLRecorder` callback."""
