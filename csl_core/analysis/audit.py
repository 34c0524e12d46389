"""The audit: a person's answers on a small sample make the count of wrong labels honest (pure, no files).

The model's ``p_wrong`` (:mod:`csl_core.analysis.trust`) says how likely each label is wrong; a person judges a
few samples the audit picks (stratified over ``p_wrong``), and every ordinary review decision counts too. The
answers re-calibrate the model, ``p = sigmoid(a + b * logit(p_wrong))``, with a prior that the model is
calibrated (``a`` near 0, ``b`` near 1), and the count with its 90% interval follows from the posterior over
``(a, b)`` on a grid: the answered samples count as answered, every other sample by its re-calibrated
probability. The selection depends on ``p_wrong`` alone (and chance), so the answers inform the curve without
bias whichever samples were picked, the audit's or the review queue's.

Measured with a simulated reviewer who answers from the truth (``scripts/bench_trust.py``, docs/bench/trust.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The audit's default size, and the fewest answers from which its interval is shown.
AUDIT_SIZE = 100
MIN_ANSWERS = 20
LEVEL = 0.90  # the interval's level

# p_wrong bins the audit stratifies over (upper edges); the last bin ends at 1.
STRATA = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 1.0)
# The prior on the re-calibration: a ~ N(0, PRIOR_A^2), log b ~ N(0, PRIOR_LOG_B^2).
PRIOR_A = 1.5
PRIOR_LOG_B = 1.0
_GRID_A = np.linspace(-5.0, 5.0, 101)
_GRID_LOG_B = np.linspace(-2.5, 2.5, 51)
_BINS = 400  # logit(p_wrong) is summarised in this many bins for the count (exact for the answered samples)
_EPS = 1e-5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def audit_seed(run_name: str) -> int:
    """The audit's random seed for a run: from its name, so that a run asks the same samples on every visit, on
    the dashboard and from the command line alike."""
    import zlib

    return zlib.crc32(str(run_name).encode("utf-8"))


def strata(p_wrong: np.ndarray) -> np.ndarray:
    """The stratum of each sample, ``(N,)`` int in ``0..len(STRATA)-1``, by its ``p_wrong``."""
    return np.searchsorted(np.asarray(STRATA[:-1]), np.nan_to_num(np.asarray(p_wrong, dtype=np.float64)),
                           side="right")


def audit_sample(p_wrong: np.ndarray, size: int = AUDIT_SIZE, *, seed: int = 0,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """The samples an audit asks about, in the order to ask them, ``(<= size,)`` int.

    Stratified over ``p_wrong`` with Neyman allocation (a stratum gets answers in proportion to its size times
    ``sqrt(p(1 - p))``, at least one where it has samples), random within each stratum, and ordered so that
    every prefix is spread over the strata the same way (a person who stops after 40 answers leaves a usable
    sample). ``exclude`` (``(N,)`` bool) are samples already answered (e.g. decided in review)."""
    p = np.clip(np.nan_to_num(np.asarray(p_wrong, dtype=np.float64)), 0.0, 1.0)
    n = len(p)
    available = np.ones(n, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if size <= 0 or not available.any():
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    stratum = strata(p)
    members = [np.flatnonzero(available & (stratum == h)) for h in range(len(STRATA))]
    sizes = np.array([len(m) for m in members], dtype=np.float64)
    spread = np.array([np.sqrt(max(np.mean(p[m]) * (1 - np.mean(p[m])), 1e-3)) if len(m) else 0.0
                       for m in members])
    weight = sizes * spread
    size = int(min(size, sizes.sum()))
    alloc = np.minimum(sizes, np.where(sizes > 0, 1, 0)).astype(np.int64)
    # the rest in proportion to the weights (largest remainders), never past a stratum's size
    while alloc.sum() < size:
        room = sizes - alloc
        share = np.where(room > 0, weight, 0.0)
        if share.sum() == 0:
            share = room
        target = share / share.sum() * (size - alloc.sum())
        step = np.minimum(np.maximum(np.floor(target), 0), room).astype(np.int64)
        if step.sum() == 0:
            step[np.argmax(np.where(room > 0, target, -1))] = 1
        alloc += step
    alloc = np.minimum(alloc, sizes.astype(np.int64))
    picks, keys = [], []
    for h, m in enumerate(members):
        if alloc[h]:
            chosen = rng.choice(m, size=int(alloc[h]), replace=False)
            picks.append(chosen)
            keys.append((np.arange(alloc[h]) + rng.random()) / alloc[h])
    if not picks:
        return np.zeros(0, dtype=np.int64)
    picks, keys = np.concatenate(picks), np.concatenate(keys)
    return picks[np.argsort(keys, kind="stable")][:size].astype(np.int64)


@dataclass(frozen=True)
class AuditEstimate:
    """The count of wrong labels after ``answers`` answers: ``count`` (posterior mean), ``low``/``high`` its
    interval at ``level``, ``answered_wrong`` of the answered samples judged wrong, ``a``/``b`` the
    re-calibration's posterior means."""

    count: float
    low: float
    high: float
    level: float
    answers: int
    answered_wrong: int
    a: float
    b: float


def _posterior(z_answered: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid ``(a, b)`` and its normalised posterior weights given the answers."""
    a, log_b = np.meshgrid(_GRID_A, _GRID_LOG_B, indexing="ij")
    a, b = a.ravel(), np.exp(log_b.ravel())
    log_post = -0.5 * (a / PRIOR_A) ** 2 - 0.5 * (np.log(b) / PRIOR_LOG_B) ** 2
    if len(y):
        eta = a[:, None] + b[:, None] * z_answered[None, :]
        # log sigmoid(eta) for y = 1, log sigmoid(-eta) for y = 0, stably
        signed = np.where(y[None, :] == 1, eta, -eta)
        log_post = log_post + (-np.logaddexp(0.0, -signed)).sum(axis=1)
    w = np.exp(log_post - log_post.max())
    return a, b, w / w.sum()


def estimate_with_answers(p_wrong: np.ndarray, answered: np.ndarray, wrong: np.ndarray, *,
                          level: float = LEVEL, draws: int = 4000, seed: int = 0) -> AuditEstimate:
    """The count of wrong labels among all ``N`` samples given a person's answers: ``answered`` ``(M,)``
    sample indices and ``wrong`` ``(M,)`` bool (True: the person judged the label wrong). Answered samples
    count as answered; the others by the re-calibrated ``p_wrong``; the interval holds the count's posterior
    ``level`` (the uncertainty of the re-calibration and of each unanswered sample's chance)."""
    p = np.nan_to_num(np.asarray(p_wrong, dtype=np.float64))
    answered = np.asarray(answered, dtype=np.int64)
    y = np.asarray(wrong, dtype=bool).astype(np.int64)
    if len(answered) != len(y):
        raise ValueError(f"{len(answered)} answered samples but {len(y)} answers")
    if len(answered) and (answered.min() < 0 or answered.max() >= len(p)):
        raise ValueError(f"answered samples must lie in 0..{len(p) - 1}")
    answered, first = np.unique(answered, return_index=True)   # one answer per sample: the first given
    y = y[first]
    z = _logit(p)
    a, b, w = _posterior(z[answered], y)
    rest = np.ones(len(p), dtype=bool)
    rest[answered] = False
    counts, edges = np.histogram(z[rest], bins=_BINS)
    centres = 0.5 * (edges[:-1] + edges[1:])
    q = _sigmoid(a[:, None] + b[:, None] * centres[None, :])            # (grid, bins)
    mean = q @ counts
    var = (q * (1 - q)) @ counts
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(w), size=draws, p=w)
    sampled = mean[pick] + np.sqrt(var[pick]) * rng.standard_normal(draws)
    known = int(y.sum())
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(sampled, [tail, 1.0 - tail])
    # without answers the count is the model's own (the sum of p_wrong); the prior gives its interval
    count = float(known + w @ mean) if len(y) else float(p.sum())
    low, high = min(low, count - known), max(high, count - known)
    return AuditEstimate(count=count, low=float(known + max(low, 0.0)),
                         high=float(known + min(high, rest.sum())), level=level, answers=int(len(y)),
                         answered_wrong=known, a=float(w @ a), b=float(w @ b))


def recalibrated(p_wrong: np.ndarray, estimate: AuditEstimate) -> np.ndarray:
    """``p_wrong`` re-calibrated by an audit (the posterior-mean curve's point values)."""
    return _sigmoid(estimate.a + estimate.b * _logit(p_wrong))
