"""Would predictions from models that never saw a sample make better suggestions and a better count?
(docs/bench/cleaning.md, "held-out predictions").

For each finished run folder with trusted labels in its sample table, trains ``--folds`` models with the run's
own model and recipe (:func:`csl_core.engine.memorization.subset_model_probabilities`), each on every fold but
one, stratified by given label, and keeps each model's softmax on the fold it left out under ``--out`` (one
file per fold: a rerun continues). Then compares suggesters and counts against the trusted labels, as
``scripts/bench_suggestions.py`` does: the class evidence of the library (``P`` the mean softmax over
training, ``V`` the 30 nearest neighbours' labels) against the held-out softmax ``H`` alone and mixed in.

    python -m scripts.bench_heldout RUN [RUN ...] --out DIR [--folds 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from csl_core.analysis.noise_rate import estimate_label_noise, wrong_label_weights
from csl_core.analysis.scores import KNN_NEIGHBOURS, default_score, nearest_neighbour_indices, suspicion
from csl_core.analysis.suggest import neighbour_vote, suggest
from csl_core.run.store import RunStore
from scripts.bench_suggestions import HIGH, TOP_SHARE, evaluate


def fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each sample's fold: every class shuffled (seeded) and dealt out in turn."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold_of[rows] = np.arange(len(rows)) % folds
    return fold_of


def held_out(store: RunStore, out: Path, folds: int, seed: int) -> np.ndarray:
    """The held-out softmax of every sample, ``(N, C)``, training the folds ``out`` lacks."""
    from csl_core.engine.memorization import recipe_for, subset_model_probabilities

    out.mkdir(parents=True, exist_ok=True)
    labels = store.samples()["label"].to_numpy(np.int64)
    fold_of = fold_assignment(labels, folds, seed)
    probabilities = np.zeros((len(labels), len(store.classes)), dtype=np.float32)
    training_set = None
    for k in range(folds):
        file = out / f"fold{k}-of-{folds}-seed{seed}.npy"
        rows = np.flatnonzero(fold_of == k)
        if not file.is_file():
            training_set = training_set or store.training_set()
            began = time.perf_counter()
            p = subset_model_probabilities(training_set.source.images, training_set.image_index, labels,
                                           fold_of != k, recipe_for(store), seed=1000 + k, predict_rows=rows)
            np.save(file, p[rows])
            print(f"{store.name}: fold {k + 1}/{folds} trained in {time.perf_counter() - began:.0f} s", flush=True)
        probabilities[rows] = np.load(file, allow_pickle=False)
    return probabilities


def right_share(suggested, confidence, given, true, order) -> str:
    c = evaluate(suggested, confidence, given, true, order)
    return f"{c['top']:.3f} / {c['all']:.3f} / {c['high']:.3f} ({c['coverage']:.0%})"


def one_run(path: str, out: Path, folds: int, seed: int) -> list[str]:
    store = RunStore(path)
    scores = store.scores()
    given = scores["label"].to_numpy(np.int64)
    true = scores["true_label"].to_numpy(np.int64)
    p = np.asarray(store.probabilities(), dtype=np.float64)
    n, classes = p.shape
    v = neighbour_vote(given[nearest_neighbour_indices(np.asarray(store.embeddings()), k=KNN_NEIGHBOURS)], classes)
    h = held_out(store, out / store.name, folds, seed).astype(np.float64)
    order = np.argsort(-np.nan_to_num(suspicion(scores, default_score(scores)), nan=-np.inf), kind="stable")
    wrong = int((given != true).sum())
    lines = [f"### {store.name}: {wrong:,} wrong labels of {n:,}; the held-out models predict the given label for "
             f"{np.mean(h.argmax(1) == given):.3f}, the trusted one for {np.mean(h.argmax(1) == true):.3f}", "",
             f"| evidence | suggestion right: top {TOP_SHARE:.0%} / all / confidence >= {HIGH} (share) | count "
             "(s - g)/(s + g) | outweighs | confident joint |", "| --- | --- | --- | --- | --- |"]
    mixes = {"P/2 + V/2 (the library's)": 0.5 * p + 0.5 * v, "H": h, "H/2 + V/2": 0.5 * h + 0.5 * v,
             "(P + V + H)/3": (p + v + h) / 3, "P/4 + V/4 + H/2": 0.25 * p + 0.25 * v + 0.5 * h,
             "0.4 H + 0.6 V": 0.4 * h + 0.6 * v}
    rows = np.arange(n)
    for name, evidence in mixes.items():
        suggested, confidence = suggest(evidence, given)
        label_evidence = evidence[rows, given]
        count = wrong_label_weights(confidence, label_evidence).sum()
        outweighs = int((confidence > label_evidence).sum())
        joint = estimate_label_noise(given, evidence).count
        lines.append(f"| {name} | {right_share(suggested, confidence, given, true, order)} | {count:,.0f} "
                     f"({count / wrong:.2f}x) | {outweighs:,} ({outweighs / wrong:.2f}x) | {joint:,} "
                     f"({joint / wrong:.2f}x) |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders whose sample table has the trusted labels")
    parser.add_argument("--out", required=True, help="folder for the held-out predictions (one subfolder a run)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fold split")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for path in args.runs:
        print("\n".join(one_run(path, Path(args.out), args.folds, args.seed)), flush=True)


if __name__ == "__main__":
    main()
