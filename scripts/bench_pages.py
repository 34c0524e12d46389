"""Time every dashboard page on a 60k-sample, 20-epoch run: each script run after the first load.

Builds the run folder first (unless it exists): Fashion-MNIST's 60,000 training images as the source
when the Debian package is installed (else the demo's digits, repeated), 5% of labels flipped, and
per-epoch arrays that look like training (clean samples learned early, flipped ones late or never),
written with ``RunStore.create`` + ``write_epoch`` as the trainer would. Then each page listed in
``app.py`` runs once under Streamlit's AppTest (filling the caches) and ``--reruns`` more times; the
median rerun is the page's time. Target (issue 3): under 1 s a page.

    python -m scripts.bench_pages                      # run folder in /tmp/csl-bench-pages/fmnist-60k
    python -m scripts.bench_pages --out DIR --reruns 7
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from csl_core.data import DEBIAN_FASHION_MNIST, FASHION_CLASSES, inject_label_noise
from csl_core.engine.train import TrainConfig
from csl_core.run.store import RunStore

ROOT = Path(__file__).resolve().parents[1]

TARGET_SECONDS = 1.0
NOISE = 0.05


def build_run(out: Path, *, epochs: int = 20, seed: int = 0) -> RunStore:
    """A plausible finished run over an array source, written epoch by epoch."""
    if DEBIAN_FASHION_MNIST.exists():
        from csl_core.data import load_fashion_mnist

        source, _ = load_fashion_mnist()
        spec, classes, true = "fashion-mnist", FASHION_CLASSES, source.labels
        image_index = np.arange(len(true))
    else:  # the digits, repeated up to 60k samples (images shared, so duplicates: fine for timing)
        from csl_core.data import load_demo

        source, _ = load_demo()
        spec, classes = "demo", source.classes
        image_index = np.resize(np.arange(len(source)), 60_000)
        true = source.labels[image_index]
    n, k = len(true), len(classes)
    labels, flipped = inject_label_noise(true, NOISE, k, seed=seed + 1)
    mislabeled = labels != true
    samples = pd.DataFrame({"index": np.arange(n), "sample_id": [f"train-{i:05d}" for i in range(n)],
                            "label": labels, "class_name": [classes[c] for c in labels],
                            "image_index": image_index, "true_label": true, "is_mislabeled": mislabeled,
                            "is_duplicate": np.zeros(n, bool), "duplicate_of": np.full(n, -1)})
    config = TrainConfig(data=spec, epochs=epochs, inject_noise=NOISE if spec != "demo" else None, seed=seed)
    meta = {"name": out.name, "source": spec, "classes": list(classes), "model": "small-cnn",
            "config": dataclasses.asdict(config), "image_shape": [1, 28, 28], "has_ground_truth": True,
            "has_test_split": True, "device": "cpu", "synthetic": "scripts/bench_pages.py"}
    store = RunStore.create(out, meta=meta, samples=samples, epochs=epochs)
    rng = np.random.default_rng(seed)
    # The epoch at which each sample is learned: early for most, late or never for the flipped ones.
    learned_at = np.where(mislabeled, rng.uniform(0.5, 1.4, n), rng.beta(1.3, 8.0, n)) * epochs
    width = rng.uniform(0.5, 2.0, n)
    start = np.log(k) * rng.uniform(0.9, 1.1, n)
    floor = 0.02 + 0.4 * rng.beta(1.2, 6.0, n)
    confusion = (true + rng.integers(1, k, n)) % k        # the class a clean sample is confused with
    probability_sum = np.zeros((n, k), np.float32)
    rows = np.arange(n)
    for epoch in range(epochs):
        progress = 1.0 / (1.0 + np.exp(-(epoch - learned_at) / width))
        loss = (start * (1 - progress) + floor * progress) * rng.lognormal(0.0, 0.15, n)
        p_given = np.exp(-loss)
        rest = 1.0 - p_given
        # A flipped sample's best other class is its true class, a clean one's a confusable class.
        other = np.where(mislabeled, true, confusion)
        p_other = rest * rng.uniform(0.5, 0.9, n)
        p_max = np.maximum(p_given, p_other)
        probabilities = np.tile((rest - p_other)[:, None] / (k - 2), (1, k)).astype(np.float32)
        probabilities[rows, other] = p_other
        probabilities[rows, labels] = p_given
        probability_sum += probabilities
        record = {"loss": loss.astype(np.float32), "correct": p_given >= p_other,
                  "margin": (np.log(p_given) - np.log(np.maximum(p_other, 1e-6))).astype(np.float32),
                  "p_given": p_given.astype(np.float32), "p_max": p_max.astype(np.float32)}
        store.write_epoch(epoch, record, probabilities=probability_sum / (epoch + 1),
                          timing={"seconds": 13.0, "loss": float(loss.mean()),
                                  "accuracy": float(record["correct"].mean())})
    store.update_report(test_accuracy=0.89)
    store.update_meta(completed=True)
    return store


def app_pages() -> list[tuple[str, str]]:
    """``(file, title)`` of each page, in the order ``app.py`` lists them."""
    return re.findall(r'st\.Page\("(pages/[\w/]+\.py)",\s*title="([^"]+)"', (ROOT / "app.py").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/csl-bench-pages/fmnist-60k", help="run folder (built if missing)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--reruns", type=int, default=5, help="timed script runs of each page after the first")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if not (out / "meta.json").is_file():
        began = time.perf_counter()
        build_run(out, epochs=args.epochs)
        print(f"built {out} in {time.perf_counter() - began:.1f}s")
    store = RunStore(out)
    print(f"run: {store.num_samples:,} samples x {store.finished_epochs} epochs, source {store.meta['source']}")
    os.environ["CSL_RUNS_DIR"] = str(out.parent)

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["run_path"] = str(out)
    print(f"{'page':<14} {'first load':>10} {'median rerun':>13} {'min':>7} {'max':>7}")
    slowest, problems = 0.0, []
    for file, title in app_pages():
        at.switch_page(file)
        times = []
        for _ in range(1 + args.reruns):
            began = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - began)
        problems += [f"{title}: {e.value}" for e in [*at.exception, *at.error]]
        reruns = times[1:]
        median = statistics.median(reruns)
        slowest = max(slowest, median)
        print(f"{title:<14} {times[0]:9.2f}s {median:12.3f}s {min(reruns):6.3f}s {max(reruns):6.3f}s", flush=True)
    verdict = "meets" if slowest < TARGET_SECONDS else "misses"
    print(f"slowest page: {slowest:.3f}s a script run ({verdict} the target < {TARGET_SECONDS:.0f} s)")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
