"""The per-epoch arrays a run folder holds, shared by the tracker (which fills them) and the store."""
from __future__ import annotations

import numpy as np

EPOCH_FIELDS = ("loss", "correct", "margin", "p_given", "p_max")
ARRAY_DTYPES = {"correct": np.bool_}


def check_losses(losses: np.ndarray, samples: np.ndarray, where: str) -> None:
    """Raise ``ValueError`` naming the first sample whose loss is not a finite number >= 0: a NaN would read
    as "not seen" (CSL 0, ranked cleanest), an infinity or a negative loss would break or invert the ranking.
    ``losses`` are the recorded values of the samples numbered ``samples``."""
    bad = ~(np.isfinite(losses) & (losses >= 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        more = f" (and {int(bad.sum()) - 1} more samples)" if bad.sum() > 1 else ""
        raise ValueError(f"{where}: sample {int(samples[first])} has loss {float(losses[first])!r}{more}; a loss "
                         "must be a finite number >= 0 (a diverged training, or a loss that is not per-sample "
                         "cross-entropy). Lower the learning rate or fix the loss; the finished epochs are kept")
