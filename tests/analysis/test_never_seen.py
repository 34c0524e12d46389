"""#29 (5): a sample never seen (a ``drop_last`` loader leaves it out of every epoch) has an unknown CSL: NaN,
ranked after every sample seen, never 0 (which ranked it the cleanest)."""
from __future__ import annotations

import numpy as np

from csl_core.analysis.scores import compute_scores


def test_a_sample_never_seen_scores_nan_and_ranks_after_every_sample_seen():
    loss = np.array([[0.1, 0.2], [np.nan, np.nan], [2.0, np.nan], [0.0, 0.0]])
    scores = compute_scores({"loss": loss})
    assert np.isnan(scores.loc[1, "csl"])
    assert scores.loc[2, "csl"] == 2.0 and scores.loc[3, "csl"] == 0.0     # seen once: its sum; seen at 0: 0
    assert scores["csl_rank"].tolist() == [2, 4, 1, 3]
