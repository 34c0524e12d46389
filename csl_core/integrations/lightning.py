"""PyTorch Lightning: a ``Callback`` that records every sample's loss from the training step and writes a
run folder, epoch by epoch (``pip install 'csl-clean[lightning]'``).

The ``training_step`` returns, besides the mean ``loss`` it trains on, the per-sample losses and logits::

    def training_step(self, batch, batch_idx):
        x, y, index = batch                                   # the dataset yields each sample's index
        logits = self(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        return {"loss": losses.mean(), "losses": losses, "logits": logits, "targets": y, "index": index}

    trainer = pl.Trainer(max_epochs=20, callbacks=[CSLCallback("runs/mine", labels=labels, classes=classes,
                                                               paths=paths)])

``targets`` and ``index`` may be left out when the batch is ``(x, y, index)``; ``losses`` may be left out
for plain cross-entropy. Under DDP every rank records its own samples and the epoch is combined with
:meth:`CSLTracker.all_reduce_epoch` before rank 0 writes it. Works with ``lightning`` (``lightning.pytorch``)
or the smaller ``pytorch-lightning``; the callback subclasses whichever is installed (``lightning`` first).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

try:
    import lightning.pytorch as pl
except ImportError:
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError("csl_core.integrations.lightning needs PyTorch Lightning: "
                          "pip install pytorch-lightning (or pip install 'csl-clean[lightning]')") from None

from ..engine.tracker import CSLTracker
from ..errors import InputError
from ..run.layout import META
from ..run.writer import RunWriter
from . import sample_table

__all__ = ["CSLCallback", "pl"]


class CSLCallback(pl.Callback):
    """Record per-sample loss from each training step's outputs and write the run folder ``run_dir``.

    Parameters
    ----------
    run_dir:
        The run folder to create (on global rank 0).
    classes, labels, paths, images, samples:
        The sample table, as for :class:`~csl_core.run.writer.RunWriter`: ``labels`` ``(N,)`` in the
        order of the ``index`` the dataset yields, ``paths`` or ``images`` for the dashboard.
    embeddings:
        Optional ``embeddings(pl_module) -> (N, D)`` array called once after training (penultimate-layer
        features in index order, for near-duplicate search).
    model_name:
        Shown by the dashboard; default the LightningModule's class name.
    """

    def __init__(self, run_dir: str | Path, *, classes: Sequence[str], labels: Sequence[int] | None = None,
                 paths: Sequence[str] | None = None, images: np.ndarray | None = None, samples=None,
                 embeddings: Callable[[pl.LightningModule], np.ndarray] | None = None,
                 model_name: str | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.classes = list(classes)
        self._table, self.num_samples = sample_table("CSLCallback", labels=labels, paths=paths, images=images,
                                                     samples=samples)
        self.embeddings = embeddings
        self.model_name = model_name
        self.tracker: CSLTracker | None = None
        self.writer: RunWriter | None = None
        self._restored: dict | None = None   # the tracker's totals from a checkpoint, until the tracker exists

    # ------------------------------------------------------------ Lightning hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        self.tracker = CSLTracker(self.num_samples, len(self.classes), device=pl_module.device, keep_history=False)
        if self._restored is not None:
            self.tracker.load_state_dict(self._restored)
            self._restored = None

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning restored a checkpoint's loop state: current_epoch is the epoch it resumes at
        if trainer.is_global_zero and self.writer is None:
            epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
            # fit(ckpt_path=...) continues the run this callback wrote, from the checkpoint's epoch
            resumed = getattr(trainer, "ckpt_path", None) is not None and (self.run_dir / META).exists()
            self.writer = RunWriter(self.run_dir, classes=self.classes, epochs=epochs, source="lightning",
                                    model=self.model_name or type(pl_module).__name__,
                                    extra_meta={"device": str(pl_module.device)},
                                    resume_epoch=trainer.current_epoch if resumed else None, **self._table)

    def state_dict(self) -> dict:
        """The tracker's running totals (visits, probability sums), kept in Lightning's checkpoint."""
        if self.tracker is None:
            return {}
        return {"tracker": {k: v.cpu() if isinstance(v, torch.Tensor) else v
                            for k, v in self.tracker.state_dict().items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("tracker")
        if not state:
            return
        if self.tracker is not None:
            self.tracker.load_state_dict(state)
        else:
            self._restored = state

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            raise InputError("CSLCallback: training_step must return a dict with 'logits' (and 'losses', the "
                             "per-sample losses, reduction='none'), e.g. {'loss': losses.mean(), 'losses': losses, "
                             "'logits': logits, 'targets': y, 'index': index}")
        index, targets = outputs.get("index"), outputs.get("targets")
        if index is None or targets is None:
            if not (isinstance(batch, Sequence) and len(batch) >= 3):
                raise InputError("CSLCallback: give 'index' and 'targets' in training_step's output, or make "
                                 "the batch (inputs, targets, index)")
            targets = batch[1] if targets is None else targets
            index = batch[2] if index is None else index
        self.tracker.update(index, outputs["logits"], targets, outputs.get("losses"))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.tracker.all_reduce_epoch()
        if self.writer is not None:
            self.writer.end_epoch(self.tracker)
        else:
            self.tracker.end_epoch()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.writer is None:
            return
        if trainer.interrupted:
            self.writer.close()
            return
        embeddings = self.embeddings(pl_module) if self.embeddings is not None else None
        self.writer.finish(embeddings=embeddings)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.writer is not None:
            self.writer.close()  # the finished epochs stay; the run stays incomplete
