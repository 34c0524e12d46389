"""How likely each label is wrong, and how many are: ``p_wrong`` and the one count (pure, no files).

``p_wrong`` rests on the run's own evidence, read relative to the sample's class so that it means the same on a
1,000-image folder with 4% wrong labels and on 25,000 CIFAR-10N images with 40%: the given label's share of the
class evidence (the mean softmax over training mixed with the neighbours' vote, :mod:`csl_core.analysis.suggest`)
over the median share among the samples carrying that label. A right label sits near the median whatever the
noise rate (its neighbours carry its label as often as its class's labels are right), a wrong one far below.

How much a value says (the likelihood ratio of a wrong label against a right one, logistic in the log of that
ratio: :data:`LIKELIHOOD`) was fitted once across benchmark runs with known truth (demo, a 1,210-image folder,
confusable Fashion-MNIST, CIFAR-10N aggre and worse; ``scripts/bench_trust.py --fit``); how many labels of *this*
run are wrong (the prior) is estimated from the run itself, as the mixture weight that makes the probabilities
consistent with it (EM over the prior, Saerens et al. 2002): ``p_wrong = sigmoid(logit(prior) + log LR)``. The
count is their sum. Measured on cases the coefficients were not fitted on (docs/bench/trust.md): close on the
demo and Fashion-MNIST, high on the small folder, low on CIFAR-10N; the audit (:mod:`csl_core.analysis.audit`)
is what makes it honest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audit import LEVEL, MIN_ANSWERS, estimate_with_answers, recalibrated

# log LR(wrong : right) = intercept + slope * relative evidence; fitted by scripts/bench_trust.py --fit
# (docs/bench/trust.md)
LIKELIHOOD = {"intercept": -1.5, "slope": -2.42}
# Without answers, the truth lay within this factor of the count on the benchmark cases (count / truth 0.71-1.91,
# docs/bench/trust.md; widened from 0.55 after a held-out folder counted 1.91x): the count's interval "from the model".
MODEL_SPREAD = (0.5, 1.5)
_FLOOR = 1e-4
_PRIOR_RANGE = (1e-4, 0.9)


def _class_median(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    for c in np.unique(labels):
        members = labels == c
        out[members] = np.median(values[members])
    return out


def relative_evidence(label_evidence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(g / median g of the label's class)``, ``(N,)``: the feature ``p_wrong`` reads (module docstring)."""
    labels = np.asarray(labels, dtype=np.int64)
    g = np.clip(np.nan_to_num(np.asarray(label_evidence, dtype=np.float64), nan=1.0), _FLOOR, 1.0)
    if len(g) != len(labels):
        raise ValueError(f"label evidence and labels need one entry per sample; got {len(g)} and {len(labels)}")
    return np.log(g / _class_median(g, labels))


def log_likelihood_ratio(feature: np.ndarray, *, intercept: float, slope: float) -> np.ndarray:
    """log of how much likelier each sample's relative evidence is under a wrong label than under a right one."""
    return intercept + slope * np.asarray(feature, dtype=np.float64)


def prior_from_run(log_lr: np.ndarray, *, iterations: int = 1000, tol: float = 1e-9) -> float:
    """The share of wrong labels that makes ``sigmoid(logit(prior) + log_lr)`` average to the prior (the
    maximum-likelihood mixture weight), by EM."""
    log_lr = np.asarray(log_lr, dtype=np.float64)
    if not len(log_lr):
        return 0.0
    prior = 0.1
    for _ in range(iterations):
        new = float(np.clip(_sigmoid(np.log(prior / (1 - prior)) + log_lr).mean(), *_PRIOR_RANGE))
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def p_wrong(label_evidence: np.ndarray, labels: np.ndarray, *, likelihood: dict = LIKELIHOOD) -> np.ndarray:
    """The probability that each sample's label is wrong, ``(N,)`` in [0, 1] (module docstring)."""
    log_lr = log_likelihood_ratio(relative_evidence(label_evidence, labels), **likelihood)
    prior = prior_from_run(log_lr)
    return _sigmoid(np.log(prior / (1 - prior)) + log_lr)


@dataclass(frozen=True)
class WrongCount:
    """The one count of wrong labels of a run: ``count`` (rounded), ``low``/``high`` its interval at ``level``,
    ``answers`` the person's answers it rests on besides the model (0: the model alone), ``p_wrong`` ``(N,)``
    each sample's probability after those answers (1 / 0 where answered)."""

    count: int
    low: int
    high: int
    level: float
    answers: int
    p_wrong: np.ndarray

    @property
    def source(self) -> str:
        return f"from your {self.answers} answers" if self.answers else "from the model"

    def text(self) -> str:
        """``about 45 wrong (38-53, from the model)``: the one line every page and command shows."""
        return f"about {self.count:,} wrong ({self.low:,}-{self.high:,}, {self.source})"


def wrong_count(p_wrong_model: np.ndarray, answered: np.ndarray | None = None, wrong: np.ndarray | None = None,
                *, level: float = LEVEL) -> WrongCount:
    """The one count of wrong labels: the sum of ``p_wrong_model`` with the interval the model's measured
    spread allows (:data:`MODEL_SPREAD`), or, with at least :data:`~csl_core.analysis.audit.MIN_ANSWERS`
    answers (``answered`` sample indices, ``wrong`` bool: the person judged the label wrong; audit answers and
    review decisions alike), the audit's estimate (:func:`~csl_core.analysis.audit.estimate_with_answers`).
    Every page and command shows
    this number; none computes another."""
    p = np.clip(np.nan_to_num(np.asarray(p_wrong_model, dtype=np.float64)), 0.0, 1.0)
    answered = np.zeros(0, dtype=np.int64) if answered is None else np.asarray(answered, dtype=np.int64)
    wrong = np.zeros(0, dtype=bool) if wrong is None else np.asarray(wrong, dtype=bool)
    if len(np.unique(answered)) < MIN_ANSWERS:
        count = float(p.sum())
        return WrongCount(count=int(round(count)), low=int(np.floor(count * MODEL_SPREAD[0])),
                          high=int(np.ceil(count * MODEL_SPREAD[1])), level=level, answers=0, p_wrong=p.copy())
    estimate = estimate_with_answers(p, answered, wrong, level=level)
    after = recalibrated(p, estimate)
    after[answered] = wrong
    return WrongCount(count=int(round(estimate.count)), low=int(np.floor(estimate.low)),
                      high=int(np.ceil(estimate.high)), level=level, answers=estimate.answers, p_wrong=after)
