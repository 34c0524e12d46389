"""The per-epoch arrays a run folder holds, shared by the tracker (which fills them), ``import`` (which
derives them from another framework's probabilities) and the store."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import open_checked, read_npy_header

EPOCH_FIELDS = ("loss", "correct", "margin", "p_given", "p_max")
ARRAY_DTYPES = {"correct": np.bool_}


def not_losses(values: np.ndarray, *, unseen: bool = False) -> np.ndarray:
    """The one rule of what a loss is (a finite number >= 0): where ``values`` break it. With ``unseen``, NaN
    is allowed (a stored array's sample not seen in that epoch)."""
    bad = ~(np.isfinite(values) & (values >= 0))
    return bad & ~np.isnan(values) if unseen else bad


def check_losses(losses: np.ndarray, samples: np.ndarray, where: str) -> None:
    """Raise ``ValueError`` naming the first sample whose loss is not a finite number >= 0: a NaN would read
    as "not seen" (CSL 0, ranked cleanest), an infinity or a negative loss would break or invert the ranking.
    ``losses`` are the recorded values of the samples numbered ``samples``."""
    bad = not_losses(losses)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        more = f" (and {int(bad.sum()) - 1} more samples)" if bad.sum() > 1 else ""
        raise InputError(f"{where}: sample {int(samples[first])} has loss {float(losses[first])!r}{more}; a loss "
                         "must be a finite number >= 0 (a diverged training, or a loss that is not per-sample "
                         "cross-entropy). Lower the learning rate or fix the loss; the finished epochs are kept")


def epoch_fields(logits, targets, probabilities=None) -> dict:
    """The per-epoch fields besides the loss, from torch tensors: ``correct`` (bool), ``margin`` (the given
    class's logit minus the best other's: AUM's margin), ``p_given`` and ``p_max``. Pure: tensors in, tensors
    out, on their device and in their dtype, with no host synchronisation (the tracker calls it inside the
    training step, ``import`` on CPU tensors; nothing here imports torch).

    ``logits`` is ``(..., C)``, ``targets`` the class indices ``(...)`` (int64); ``probabilities`` defaults to
    the softmax of ``logits``. Log-probabilities serve as logits: softmax only shifts them, so the margin is
    the same."""
    if probabilities is None:
        probabilities = logits.softmax(dim=-1)
    given = targets.unsqueeze(-1)
    margin = logits.gather(-1, given).squeeze(-1) - logits.scatter(-1, given, float("-inf")).amax(dim=-1)
    return {"correct": logits.argmax(dim=-1) == targets, "margin": margin,
            "p_given": probabilities.gather(-1, given).squeeze(-1), "p_max": probabilities.amax(dim=-1)}


def npy_header(file: Path) -> tuple[tuple, bool, np.dtype, int]:
    """A ``.npy`` file's ``(shape, fortran_order, dtype, missing)`` from its header alone (nothing is loaded or
    unpickled): ``missing`` is how many bytes the header promises beyond what the file holds (negative: more
    bytes than promised; 0: the sizes agree). Raises OSError (FileNotFoundError when absent) or ValueError."""
    with open_checked(file) as f:   # a FIFO or a link named like an array is refused, never waited on
        shape, fortran_order, dtype, offset = read_npy_header(f)
        size = os.fstat(f.fileno()).st_size
    return shape, fortran_order, dtype, offset + int(np.prod(shape, dtype=object)) * dtype.itemsize - size
