"""Record every sample's loss, inside the training step, at no extra cost.

The tracker takes the per-sample losses and logits of the forward pass that trains and writes them
into buffers on the training device, indexed by sample. Nothing is copied to the host until
:meth:`CSLTracker.end_epoch`, once per epoch, so a training step gains no host synchronisation.

Use it in any PyTorch loop::

    tracker = CSLTracker(num_samples=len(dataset), num_classes=10, device=device)
    for epoch in range(epochs):
        for x, y, index in loader:                      # the dataset yields the sample index too
            logits = model(x)
            losses = F.cross_entropy(logits, y, reduction="none")
            tracker.update(index, logits, y, losses)
            losses.mean().backward(); optimizer.step(); optimizer.zero_grad()
        tracker.end_epoch()
    csl = tracker.cumulative_loss()                     # (N,) numpy; higher = more memorised
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..run.schema import EPOCH_FIELDS, check_losses, epoch_fields

# Past this many N x C elements the running probability sum (for the suggested label) is not kept.
MAX_PROBABILITY_ELEMENTS = 2**28


class CSLTracker:
    """Per-sample, per-epoch loss, correctness, margin and probabilities, kept on ``device``.

    Parameters
    ----------
    num_samples, num_classes:
        Size of the dataset and number of classes; ``update`` receives indices in ``[0, num_samples)``.
    device:
        Where the buffers live; the training device.
    keep_history:
        Keep every finished epoch on the host so that :meth:`history` and :meth:`cumulative_loss`
        work without a run folder. Our trainer streams epochs to disk instead and turns this off.
    track_probabilities:
        Keep a running sum of softmax probabilities (``N x C`` floats) for the suggested label.
        ``None`` keeps it when ``N * C`` is at most 2**28.
    """

    def __init__(self, num_samples: int, num_classes: int, *, device: torch.device | str = "cpu",
                 keep_history: bool = True, track_probabilities: bool | None = None):
        if num_samples <= 0 or num_classes < 2:
            raise InputError("the tracker needs at least one sample and two classes")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.keep_history = keep_history
        if track_probabilities is None:
            track_probabilities = num_samples * num_classes <= MAX_PROBABILITY_ELEMENTS
        self._buffers = {name: torch.empty(num_samples, device=self.device,
                                           dtype=torch.uint8 if name == "correct" else torch.float32)
                         for name in EPOCH_FIELDS}
        self.probability_sum = (torch.zeros(num_samples, num_classes, device=self.device)
                                if track_probabilities else None)
        self.visits = torch.zeros(num_samples, device=self.device)
        self.epochs_done = 0
        self._history: list[dict[str, np.ndarray]] = []
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        for name, buf in self._buffers.items():
            buf.fill_(0 if name == "correct" else float("nan"))
        # Which samples this epoch has seen, for all_reduce_epoch (a loss may itself be NaN).
        self._visits_at_epoch_start = self.visits.clone()
        self._seen_reduced = None  # set by all_reduce_epoch: the samples some rank saw

    @torch.no_grad()
    def update(self, indices: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
               losses: torch.Tensor | None = None) -> None:
        """Record one batch. ``losses`` are the per-sample losses that train (``reduction="none"``);
        when omitted they are computed as cross-entropy from ``logits``. Runs entirely on the device."""
        indices = torch.as_tensor(indices)
        if indices.device.type == "cpu":  # checked on the host before any write: no device synchronisation
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
                bad = indices[(indices < 0) | (indices >= self.num_samples)][0]
                raise IndexError(f"sample index {int(bad)} is outside 0..{self.num_samples - 1}; the dataset must "
                                 "yield each sample's index in [0, num_samples)")
            indices = indices.to(self.device, non_blocking=True)
        elif indices.device.type == "cuda":  # on the device: checked there, without waiting, before the writes
            torch._assert_async(((indices >= 0) & (indices < self.num_samples)).all(),
                                "CSLTracker.update: a sample index is outside [0, num_samples)")
        targets = targets.to(self.device, non_blocking=True)
        logits = logits.detach().float()  # (B, C)
        if losses is None:
            losses = F.cross_entropy(logits, targets, reduction="none")
        probabilities = logits.softmax(dim=1)  # (B, C)
        fields = epoch_fields(logits, targets, probabilities)
        buffers = self._buffers
        buffers["loss"][indices] = losses.detach().float()
        buffers["correct"][indices] = fields["correct"].to(torch.uint8)
        for name in ("margin", "p_given", "p_max"):
            buffers[name][indices] = fields[name]
        if self.probability_sum is not None:
            # Accumulated per visit and divided by the visit count later: a sample seen twice in one
            # epoch (a padded distributed sampler) is averaged, not over-weighted.
            self.probability_sum.index_add_(0, indices, probabilities)
        self.visits.index_add_(0, indices, torch.ones_like(losses, dtype=torch.float32))

    def end_epoch(self) -> dict[str, np.ndarray]:
        """Copy the finished epoch to the host (the one synchronisation per epoch) and start the next.

        Returns ``{field: (N,) array}``; samples not seen this epoch are NaN (``correct`` 0).
        """
        record = {name: buf.cpu().numpy().copy() for name, buf in self._buffers.items()}
        record["correct"] = record["correct"].astype(bool)
        seen = (self._seen_reduced if self._seen_reduced is not None
                else self.visits > self._visits_at_epoch_start).cpu().numpy()
        check_losses(record["loss"][seen], np.flatnonzero(seen), f"epoch {self.epochs_done + 1}")
        self.epochs_done += 1
        if self.keep_history:
            self._history.append(record)
        self._reset_epoch()
        return record

    def history(self) -> dict[str, np.ndarray]:
        """Every finished epoch as ``{field: (N, epochs)}`` arrays (needs ``keep_history``)."""
        if not self.keep_history:
            raise RuntimeError("history is not kept (keep_history=False); read the run folder instead")
        if not self._history:
            return {name: np.empty((self.num_samples, 0)) for name in EPOCH_FIELDS}
        return {name: np.stack([h[name] for h in self._history], axis=1) for name in EPOCH_FIELDS}

    def cumulative_loss(self) -> np.ndarray:
        """CSL: each sample's loss summed over the finished epochs."""
        return np.nansum(self.history()["loss"], axis=1)

    def mean_probabilities(self) -> np.ndarray | None:
        """Mean softmax probabilities over every visit, ``(N, C)``, or ``None`` when not tracked."""
        if self.probability_sum is None:
            return None
        visits = self.visits.clamp(min=1).unsqueeze(1)
        return (self.probability_sum / visits).cpu().numpy()

    @torch.no_grad()
    def all_reduce_epoch(self, group=None) -> None:
        """Combine the epoch in flight across the ranks of a ``torch.distributed`` group.

        Call it on every rank, once per epoch, before :meth:`end_epoch`. Each rank has recorded the
        samples its sampler gave it; afterwards every rank holds every sample of the epoch, each
        taken from exactly one rank: the lowest that saw it (``DistributedSampler`` pads the last
        batches with repeated indices, so a sample may be seen on two ranks). Samples no rank saw
        stay NaN.

        The running totals (visits and probability sums) are summed onto rank 0 of ``group``; the
        other ranks restart them from zero, so every visit counts once over the run. Read
        :meth:`mean_probabilities` and :meth:`state_dict` on rank 0, and load a checkpoint's tracker
        state on rank 0 only.
        """
        import torch.distributed as dist

        rank, world = dist.get_rank(group), dist.get_world_size(group)
        seen = self.visits > self._visits_at_epoch_start
        owner = torch.where(seen, rank, world).to(torch.int32)  # (N,)
        dist.all_reduce(owner, op=dist.ReduceOp.MIN, group=group)
        values = torch.stack([buf.float() for buf in self._buffers.values()])  # (fields, N)
        values = torch.where(owner == rank, values, torch.zeros((), device=values.device))
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
        unseen = owner == world
        self._seen_reduced = ~unseen
        for row, (name, buf) in zip(values, self._buffers.items()):
            if name == "correct":
                buf.copy_(row.masked_fill(unseen, 0))
            else:
                buf.copy_(row.masked_fill(unseen, float("nan")))
        main = 0 if group is None else dist.get_global_rank(group, 0)
        totals = [self.visits] + ([self.probability_sum] if self.probability_sum is not None else [])
        for total in totals:
            dist.reduce(total, dst=main, op=dist.ReduceOp.SUM, group=group)
            if rank != 0:
                total.zero_()
        self._visits_at_epoch_start = self.visits.clone()

    def state_dict(self) -> dict:
        """The running totals a checkpoint needs to resume (epochs done, visits, probability sums)."""
        return {"epochs_done": self.epochs_done, "visits": self.visits,
                "probability_sum": self.probability_sum}

    def load_state_dict(self, state: dict) -> None:
        """Restore the running totals of :meth:`state_dict`."""
        self.epochs_done = int(state["epochs_done"])
        self.visits.copy_(state["visits"])
        self._visits_at_epoch_start = self.visits.clone()
        if self.probability_sum is not None and state.get("probability_sum") is not None:
            self.probability_sum.copy_(state["probability_sum"])
