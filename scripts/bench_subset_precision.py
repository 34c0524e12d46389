"""How much the trainer's precision saves the subset models (the memorisation estimate, the held-out
predictions of scripts/bench_heldout.py): one model on half of a finished run's samples, trained with the
run's recipe in float32 and in the trainer's precision for the device, alternately, medians of ``--repeats``.

    python -m scripts.bench_subset_precision RUN [--epochs E] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    import torch

    from csl_core.engine.memorization import recipe_for, subset_model_probabilities
    from csl_core.engine.runtime import autocast_dtype
    from csl_core.run.store import RunStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder whose data source is readable here")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each model (default: the run's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = RunStore(args.run)
    training_set = store.training_set()
    recipe = recipe_for(store)
    if args.epochs:
        recipe["epochs"] = args.epochs
    labels = np.asarray(training_set.labels)
    half = np.arange(len(labels)) % 2 == 0
    precisions = {"float32": {**recipe, "amp": False}, "the trainer's": {k: v for k, v in recipe.items() if k != "amp"}}
    seconds: dict[str, list[float]] = {name: [] for name in precisions}
    for _ in range(args.repeats):
        for name, r in precisions.items():
            began = time.perf_counter()
            subset_model_probabilities(training_set.source.images, training_set.image_index, labels, half, r)
            seconds[name].append(time.perf_counter() - began)
    own = autocast_dtype(torch.device("cpu"), None)
    f32, fast = (statistics.median(seconds[name]) for name in precisions)
    print(f"{store.name}: {recipe['model']}, {int(half.sum()):,} samples, {recipe['epochs']} epochs, {args.threads} "
          f"thread(s): float32 {f32:.1f} s, the trainer's precision ({own or 'float32'}) {fast:.1f} s, "
          f"{f32 / fast:.1f}x (medians of {args.repeats})")


if __name__ == "__main__":
    main()
