"""Do the numbers a person acts on come true? The count, p_wrong's calibration, the audit and the suggested
cleaning of finished runs, measured against their known truth (docs/bench/trust.md).

    python -m scripts.bench_trust RUN[:TRUTH_CSV] ... [--trials 200] [--out DIR]

A run made with injected noise (``--inject-noise``, the demo) or by ``bench-real`` carries its truth; a run of a
folder made by ``scripts/make_own_folder.py`` takes its ``truth.csv`` (``path,true_label``, paths relative to the
``images`` folder beside it). For each run: count / truth without an audit (the former count beside it), the
expected calibration error of ``p_wrong`` with its reliability table, the audit's 90%
interval with a simulated reviewer who answers from the truth (coverage and width over ``--trials`` audits of
40 and 100 answers), and the suggested cleaning's precision and share of wrong labels fixed, without an audit
and after one audit of 100 answers. Writes ``trust.json`` and ``trust.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def load_run(spec: str):
    """``RUN`` or ``RUN:TRUTH_CSV`` -> (name, scores table, true labels)."""
    from csl_core.run.store import RunStore

    run, _, truth_file = spec.partition(":")
    store = RunStore(run, read_only=True)
    scores = store.scores()
    if truth_file:
        root = Path(truth_file).parent / "images"
        with open(truth_file, newline="") as f:
            truth = {str(root / row["path"]): row["true_label"] for row in csv.DictReader(f)}
        paths = scores["path"].astype(str)
        missing = [p for p in paths if p not in truth]
        if missing:
            raise SystemExit(f"{truth_file}: no truth for {len(missing)} samples of {run}, e.g. {missing[0]}")
        true = np.array([store.classes.index(truth[p]) for p in paths], dtype=np.int64)
    elif "true_label" in scores.columns:
        true = scores["true_label"].to_numpy(np.int64)
    else:
        raise SystemExit(f"{run}: the run carries no truth; give RUN:TRUTH_CSV")
    return store.name, scores, true


def measure(scores, true: np.ndarray, *, trials: int, seed: int = 0) -> dict:
    from csl_core.analysis.audit import audit_sample
    from csl_core.analysis.cleaning import suggested_cleaning
    from csl_core.analysis.noise_rate import noise_count, wrong_label_weights
    from csl_core.bench.trust import audit_trials, calibration, cleaning_outcome

    given = scores["label"].to_numpy(np.int64)
    wrong = given != true
    truth = int(wrong.sum())
    count = noise_count(scores)
    p = count.p_wrong
    former = wrong_label_weights(scores["suggested_confidence"], scores["label_evidence"]).sum()
    out = {"samples": len(given), "wrong": truth, "count": count.count, "low": count.low, "high": count.high,
           "count_over_truth": count.count / max(truth, 1), "interval_holds_truth": count.low <= truth <= count.high,
           "former_count_over_truth": float(former) / max(truth, 1),
           "calibration": calibration(p, wrong), "audit": audit_trials(p, wrong, trials=trials, seed=seed)}
    plan = suggested_cleaning(scores)
    out["cleaning"] = {**cleaning_outcome(plan.action, plan.label, given, true),
                       "expected_right": plan.expected_right}
    # after one audit of 100 answers (the simulated reviewer: relabel a wrong label to its true class, keep a right one)
    actions = np.full(len(given), "undecided", dtype=object)
    asked = audit_sample(p, 100, seed=seed)
    actions[asked] = np.where(wrong[asked], "relabel", "keep")
    audited = suggested_cleaning(scores, actions)
    after = cleaning_outcome(audited.action, audited.label, given, true)
    out["cleaning_after_audit"] = {**after, "expected_right": audited.expected_right,
                                   "count_after_audit": noise_count(scores, actions).count}
    return out


def fit(cases: list[tuple[str, object, np.ndarray]]) -> dict:
    """The constants the library ships, fitted on ``cases`` (name, scores, true labels): p_wrong's likelihood
    ratio (a logistic regression of "wrong" on the relative label evidence with one intercept per case, each
    case weighted alike, L2 C = 0.1; the shared intercept is the cases' mean intercept less their log prior
    odds) and the relabel-fix model (a logistic regression of "relabelling fixes it" on s - g and logit(s), the
    case's log odds of a wrong label as an offset)."""
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    from csl_core.analysis.trust import relative_evidence

    k = len(cases)
    rows, ys, weights, fix_x, fix_y, offsets = [], [], [], [], [], []
    for i, (_, scores, true) in enumerate(cases):
        given = scores["label"].to_numpy(np.int64)
        wrong = (given != true).astype(int)
        x = relative_evidence(scores["label_evidence"], given)
        rows.append(np.column_stack([x, np.eye(k)[np.full(len(x), i)]]))
        ys.append(wrong)
        weights.append(np.full(len(x), 1.0 / len(x)))
        s = np.clip(scores["suggested_confidence"].to_numpy(np.float64), 1e-4, 1 - 1e-4)
        g = scores["label_evidence"].to_numpy(np.float64)
        fix_x.append(np.column_stack([np.ones(len(s)), s - g, np.log(s / (1 - s))]))
        fix_y.append(wrong * (scores["suggested_label"].to_numpy(np.int64) == true))
        offsets.append(np.log(wrong.mean() / (1 - wrong.mean())))
    y = np.concatenate(ys)
    model = LogisticRegression(C=0.1, fit_intercept=False, max_iter=5000).fit(
        np.vstack(rows), y, sample_weight=np.concatenate(weights) * len(y) / k)
    slope, intercepts = model.coef_[0][0], model.coef_[0][1:]
    priors = np.array([w.mean() for w in ys])
    intercept = float(np.mean(intercepts - np.log(priors / (1 - priors))))

    def loss(w):
        return sum(np.mean(np.logaddexp(0, x @ w + o) - t * (x @ w + o))
                   for x, t, o in zip(fix_x, fix_y, offsets)) + 1e-3 * w @ w

    fix = minimize(loss, np.zeros(3), method="BFGS").x
    return {"LIKELIHOOD": {"intercept": round(intercept, 2), "slope": round(float(slope), 2)},
            "RELABEL_FIX": [round(float(v), 3) for v in fix]}


def table(results: dict) -> str:
    rows = ["| case | samples | wrong | count / truth (interval) | former count | ECE | audit 40: coverage, width "
            "| audit 100: coverage, width | cleaning: precision, share fixed (touched) | after an audit of 100 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        a40, a100 = r["audit"]["40"], r["audit"]["100"]
        c, d = r["cleaning"], r["cleaning_after_audit"]

        def clean(x):
            return (f"{x['precision']:.2f}, {x['share_fixed']:.2f} ({x['touched']})" if x["precision"] is not None
                    else "-, 0.00 (0)")
        rows.append(f"| {name} | {r['samples']:,} | {r['wrong']:,} | {r['count_over_truth']:.2f}x "
                    f"({r['low']:,}-{r['high']:,}) | {r['former_count_over_truth']:.2f}x | "
                    f"{r['calibration']['ece']:.3f} | {a40['coverage']:.2f}, {a40['width_median']:.2f} | "
                    f"{a100['coverage']:.2f}, {a100['width_median']:.2f} | {clean(c)} | {clean(d)} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="RUN or RUN:TRUTH_CSV")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", default="trust")
    parser.add_argument("--fit", action="store_true",
                        help="print the constants the library ships (trust.LIKELIHOOD, cleaning.RELABEL_FIX) fitted "
                             "on these runs instead of measuring them")
    args = parser.parse_args(argv)
    if args.fit:
        print(json.dumps(fit([load_run(spec) for spec in args.runs])))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in args.runs:
        name, scores, true = load_run(spec)
        results[name] = measure(scores, true, trials=args.trials)
        results[name]["audit"] = {str(k): v for k, v in results[name]["audit"].items()}
        print(table({name: results[name]}).splitlines()[-1], flush=True)
    (out / "trust.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "trust.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
