"""Compare suggesters and counts of wrong labels on finished run folders with ground truth, offline (no
training): which class to suggest for a suspect and how many labels are wrong (docs/bench/cleaning.md).

Suggesters: the argmax of the mean softmax over training (the former suggestion), the likeliest class
other than the given one by the mean softmax, by the vote of the 30 nearest neighbours' labels, and by
mixes of the two (the library's :func:`csl_core.analysis.suggest.class_evidence` at several weights).
Each is scored on the truly mislabeled samples: the share whose suggestion is the trusted label in the
top 2% of the default ranking, over all of them, and among those whose confidence reaches 0.7 (with the
share that reach it). Counts: the confident joint on the mean softmax (the former count), the samples
whose suggestion differs (the Run page's former second count), the confident joint on the evidence, the
samples whose suggestion outweighs their label, and the library's :func:`noise_count`.

    python -m scripts.bench_suggestions RUN [RUN ...] [--out table.md]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from csl_core.analysis.noise_rate import estimate_label_noise, noise_count, wrong_label_weights
from csl_core.analysis.scores import KNN_NEIGHBOURS, default_score, nearest_neighbour_indices, suspicion
from csl_core.analysis.suggest import class_evidence, suggest
from csl_core.run.store import RunStore

HIGH = 0.7
TOP_SHARE = 0.02
WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)


def evaluate(suggested, confidence, given, true, order) -> dict:
    wrong = given != true
    right = suggested == true
    top = order[: max(1, int(round(TOP_SHARE * len(order))))]
    top = top[wrong[top]]
    sure = wrong & (confidence >= HIGH)
    return {"top": float(right[top].mean()) if len(top) else float("nan"), "all": float(right[wrong].mean()),
            "high": float(right[sure].mean()) if sure.any() else float("nan"),
            "coverage": float(sure.mean() / wrong.mean())}


def one_run(path: str) -> dict:
    store = RunStore(path)
    scores = store.scores()
    given = scores["label"].to_numpy(np.int64)
    true = scores["true_label"].to_numpy(np.int64)
    probabilities = np.asarray(store.probabilities(), dtype=np.float64)
    neighbour_labels = given[nearest_neighbour_indices(np.asarray(store.embeddings()), k=KNN_NEIGHBOURS)]
    order = np.argsort(-np.nan_to_num(suspicion(scores, default_score(scores)), nan=-np.inf), kind="stable")
    rows = np.arange(len(given))
    suggesters = {"mean softmax, argmax (former)": (probabilities.argmax(axis=1), probabilities.max(axis=1))}
    for weight in WEIGHTS:
        name = {0.0: "mean softmax", 1.0: "kNN vote"}.get(weight, f"softmax + kNN vote at {weight:g}")
        suggesters[f"{name}, other than given"] = suggest(class_evidence(probabilities, neighbour_labels,
                                                                         vote_weight=weight), given)
    evidence = class_evidence(probabilities, neighbour_labels)
    suggested, confidence = suggest(evidence, given)
    counts = {"confident joint, mean softmax (former)": estimate_label_noise(given, probabilities).count,
              "suggestion differs, mean softmax (former second count)": int((probabilities.argmax(1) != given).sum()),
              "confident joint, evidence": estimate_label_noise(given, evidence).count,
              "suggestion outweighs the label": int((confidence > evidence[rows, given]).sum()),
              "sum of max(0, s - g)": int(round(np.maximum(0, confidence - evidence[rows, given]).sum())),
              "sum of (s - g)/(s + g) (former count)": int(round(
                  wrong_label_weights(confidence, evidence[rows, given]).sum())),
              "**noise_count** (sum of p_wrong)": noise_count(scores).count}
    return {"name": store.name, "n": len(given), "wrong": int((given != true).sum()),
            "suggesters": {k: evaluate(s, c, given, true, order) for k, (s, c) in suggesters.items()},
            "counts": counts}


def render(results: list[dict]) -> str:
    head = " | ".join(f"{r['name']} ({r['wrong']:,} of {r['n']:,})" for r in results)
    lines = [f"Suggestion right on the truly mislabeled samples: top {TOP_SHARE:.0%} of the default ranking / all "
             f"/ confidence >= {HIGH} (share of them reaching it)", "", f"| suggester | {head} |",
             "| --- |" + " --- |" * len(results)]
    for name in results[0]["suggesters"]:
        cells = [r["suggesters"][name] for r in results]
        lines.append(f"| {name} | " + " | ".join(f"{c['top']:.3f} / {c['all']:.3f} / {c['high']:.3f} "
                                                f"({c['coverage']:.0%})" for c in cells) + " |")
    lines += ["", "Count of wrong labels (estimate / truth)", "",
              f"| estimator | {head} | worst error |", "| --- |" + " --- |" * (len(results) + 1)]
    for name in results[0]["counts"]:
        ratios = [r["counts"][name] / max(1, r["wrong"]) for r in results]
        lines.append(f"| {name} | " + " | ".join(f"{r['counts'][name]:,} ({x:.2f}x)" for r, x in zip(results, ratios))
                     + f" | {max(abs(x - 1) for x in ratios):.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders whose sample table has the trusted labels")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    text = render([one_run(path) for path in args.runs])
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
