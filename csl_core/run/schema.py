"""The per-epoch arrays a run folder holds, shared by the tracker (which fills them) and the store."""
from __future__ import annotations

import numpy as np

EPOCH_FIELDS = ("loss", "correct", "margin", "p_given", "p_max")
ARRAY_DTYPES = {"correct": np.bool_}
