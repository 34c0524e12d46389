"""Whether the numbers a person acts on come true, against known truth (docs/bench/trust.md).

For one run with trusted labels: the count without an audit over the truth; the calibration of ``p_wrong``
(a reliability table and its expected calibration error); the audit's 90% interval, with a simulated reviewer
who answers from the truth, over repeated audits (coverage of the true count, width over the truth); and the
suggested cleaning's precision and the share of wrong labels it fixes. Pure: arrays in, dicts out.
"""
from __future__ import annotations

import numpy as np

from ..analysis.audit import audit_sample, estimate_with_answers


def calibration(p_wrong: np.ndarray, wrong: np.ndarray, bins: int = 10) -> dict:
    """The reliability table of ``p_wrong`` against ``wrong`` (``(N,)`` bool) in ``bins`` equal-width bins
    (samples, mean p_wrong, share truly wrong) and the expected calibration error (the bin-size-weighted mean
    gap)."""
    p = np.asarray(p_wrong, dtype=np.float64)
    y = np.asarray(wrong, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(float(p[members].mean()) - float(y[members].mean()))
            ece += members.sum() / len(p) * gap
            rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "samples": int(members.sum()),
                         "mean_p_wrong": float(p[members].mean()), "truly_wrong": float(y[members].mean())})
    return {"ece": float(ece), "table": rows}


def audit_trials(p_wrong: np.ndarray, wrong: np.ndarray, *, sizes=(40, 100), trials: int = 200,
                 seed: int = 0) -> dict:
    """Repeated audits with a reviewer who answers from the truth: for each audit size, the share of audits
    whose interval holds the true count (coverage), and the interval's width over the true count (median and
    90th percentile; a width of 0.6 is "+-30%")."""
    wrong = np.asarray(wrong, dtype=bool)
    truth = int(wrong.sum())
    out = {}
    for size in sizes:
        covered, widths, errors = [], [], []
        for t in range(trials):
            asked = audit_sample(p_wrong, size, seed=seed * 100_003 + t)
            est = estimate_with_answers(p_wrong, asked, wrong[asked], seed=t)
            covered.append(est.low <= truth <= est.high)
            widths.append((est.high - est.low) / max(truth, 1))
            errors.append(est.count / max(truth, 1))
        out[size] = {"coverage": float(np.mean(covered)), "width_median": float(np.median(widths)),
                     "width_p90": float(np.quantile(widths, 0.9)), "count_over_truth_median": float(np.median(errors))}
    return out


def cleaning_outcome(action: np.ndarray, new_label: np.ndarray, given: np.ndarray, true: np.ndarray) -> dict:
    """What a cleaning plan does against the truth: a fix is a truly wrong label dropped or relabelled to its
    true class; anything else the plan touches counts against it. Precision = fixes / touched; share fixed =
    fixes / truly wrong labels."""
    action = np.asarray(action, dtype=object)
    given, true, new_label = (np.asarray(a, dtype=np.int64) for a in (given, true, new_label))
    wrong = given != true
    relabel, drop = action == "relabel", action == "drop"
    fixes = int((drop & wrong).sum() + (relabel & wrong & (new_label == true)).sum())
    touched = int(relabel.sum() + drop.sum())
    return {"touched": touched, "relabel": int(relabel.sum()), "drop": int(drop.sum()), "fixes": fixes,
            "harms": touched - fixes, "precision": fixes / touched if touched else None,
            "share_fixed": fixes / max(int(wrong.sum()), 1)}
