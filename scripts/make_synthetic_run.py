"""Write a synthetic ImageNet-sized run folder: 1,281,167 samples x 100 epochs, 1000 classes.

The run opens in the dashboard like a trained one and is there to measure it at scale. Loss
curves are plausible, not trained: most samples are learned within the first epochs, fewer later
(an ImageNet-like step schedule drops the loss at epochs 30, 60 and 90), a small fraction of
atypical samples late, and the samples with a flipped label (``--noise``, default 1%) are memorised
last or never. ``p_given = exp(-loss)`` as for cross-entropy; the best other class takes a share of
the rest, which gives ``p_max``, ``margin`` and ``correct``.

Arrays are written row chunk by row chunk straight into the ``.npy`` files (a row chunk of a
C-ordered ``(samples, epochs)`` array is one contiguous byte range), so memory stays at one chunk.
There is no ``probabilities.npy`` (1000 classes x 1.28M samples would be 5 GB; the tracker does not
keep it past 2**28 elements either) and no ``embeddings.npy``. Images come from
:mod:`csl_core.data.synthetic`, drawn on demand.

    python scripts/make_synthetic_run.py runs/synthetic-imagenet          # ~2.2 GB, a minute or two
    python scripts/make_synthetic_run.py /tmp/small --samples 100000 --epochs 20
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from csl_core import __version__
from csl_core.data.synthetic import IMAGE_SIZE, SOURCE
from csl_core.engine.tracker import EPOCH_FIELDS
from csl_core.run.files import atomic_file, atomic_write_csv, atomic_write_json
from csl_core.run.schema import ARRAY_DTYPES
from csl_core.run.store import FORMAT_VERSION, RunStore

IMAGENET_TRAIN = 1_281_167
CHUNK_ROWS = 65536
LR_DROPS = (0.3, 0.6, 0.9)  # fractions of training at which the step schedule divides the lr by 10


def epoch_chunk(rng: np.random.Generator, kind: np.ndarray, epochs: int, num_classes: int) -> dict[str, np.ndarray]:
    """Per-epoch fields for one chunk of samples; ``kind`` is 0 typical, 1 atypical, 2 mislabeled."""
    n = len(kind)
    t = np.arange(epochs, dtype=np.float32)[None, :]  # (1, E)
    # The epoch around which each sample is learned, in fractions of training.
    learned_at = np.where(kind == 0, rng.beta(1.5, 9.0, n),
                          np.where(kind == 1, rng.uniform(0.25, 0.8, n), rng.uniform(0.55, 1.3, n)))
    learned_at = (learned_at * epochs).astype(np.float32)[:, None]  # (n, 1)
    width = (epochs * rng.uniform(0.02, 0.08, n)).astype(np.float32)[:, None]
    start = np.float32(np.log(num_classes)) * np.where(kind == 2, 1.15, 1.0).astype(np.float32)[:, None]
    floor = (0.05 + 1.5 * rng.beta(1.2, 5.0, n)).astype(np.float32)[:, None]
    for drop in LR_DROPS:  # each lr drop lowers what is left to learn
        floor = floor * np.where(t >= drop * epochs, np.float32(0.75), np.float32(1.0))
    progress = 1.0 / (1.0 + np.exp(-(t - learned_at) / width))  # (n, E), 0 -> 1
    loss = start * (1.0 - progress) + floor * progress
    loss *= rng.lognormal(0.0, 0.18, (n, epochs)).astype(np.float32)
    loss = loss.astype(np.float32)
    p_given = np.exp(-loss)
    p_other = (1.0 - p_given) * rng.beta(4.0, 3.0, (n, epochs)).astype(np.float32)
    p_other = np.maximum(p_other, np.float32(1e-7))
    return {
        "loss": loss,
        "correct": p_given > p_other,
        "margin": (np.log(p_given) - np.log(p_other)).astype(np.float32),
        "p_given": p_given.astype(np.float32),
        "p_max": np.maximum(p_given, p_other).astype(np.float32),
    }


def make_run(out: Path, *, samples: int = IMAGENET_TRAIN, epochs: int = 100, classes: int = 1000,
             noise: float = 0.01, atypical: float = 0.03, seed: int = 0, progress: bool = True) -> RunStore:
    """Write the run folder ``out`` (which must not hold a run yet) and return it."""
    if (out / "meta.json").exists():
        raise SystemExit(f"{out} already holds a run; remove it or choose another folder")
    rng = np.random.default_rng(seed)
    true_label = rng.integers(0, classes, samples)
    flipped = rng.random(samples) < noise
    label = np.where(flipped, (true_label + rng.integers(1, classes, samples)) % classes, true_label)
    kind = np.where(flipped, 2, np.where(rng.random(samples) < atypical, 1, 0))

    arrays = out / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    files = {}
    with ExitStack() as writing:  # every array goes under a temporary name, renamed once complete
        for name in EPOCH_FIELDS:
            dtype = np.dtype(ARRAY_DTYPES.get(name, np.float32))
            tmp = writing.enter_context(atomic_file(arrays / f"{name}.npy", durable=False))
            f = writing.enter_context(open(tmp, "wb"))
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                     "fortran_order": False, "shape": (samples, epochs)})
            files[name] = (f, dtype)
        began = time.perf_counter()
        loss_sum = np.zeros(epochs)
        correct_sum = np.zeros(epochs)
        for start in range(0, samples, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, samples)
            chunk = epoch_chunk(np.random.default_rng([seed, start]), kind[start:stop], epochs, classes)
            loss_sum += chunk["loss"].sum(axis=0, dtype=np.float64)
            correct_sum += chunk["correct"].sum(axis=0)
            for name, (f, dtype) in files.items():
                f.write(np.ascontiguousarray(chunk[name], dtype=dtype).tobytes())
            if progress:
                print(f"\r{stop:,}/{samples:,} samples  {time.perf_counter() - began:.0f}s", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)

    class_names = [f"class {c:03d}" for c in range(classes)]
    table = pd.DataFrame({
        "index": np.arange(samples),
        "sample_id": pd.Series(np.arange(samples)).map("synthetic-{:07d}".format),
        "label": label,
        "class_name": np.asarray(class_names, dtype=object)[label],
        "image_index": np.arange(samples),
        "true_label": true_label,
        "is_mislabeled": flipped,
        "is_duplicate": np.zeros(samples, dtype=bool),
        "duplicate_of": np.full(samples, -1),
    })
    atomic_write_csv(out / "samples.csv", table)
    atomic_write_json(out / "report.json", {
        "skipped": [], "counts": {"listed": samples, "used": samples, "skipped": 0}, "test_accuracy": None,
        "epochs": [{"epoch": e, "seconds": 0.0, "loss": loss_sum[e] / samples, "accuracy": correct_sum[e] / samples,
                    "lr": 0.1 * 0.1 ** sum(e >= d * epochs for d in LR_DROPS), "eval_seconds": 0.0}
                   for e in range(epochs)]})
    now = time.time()
    config = {"data": SOURCE, "epochs": epochs, "model": "resnet18", "batch_size": 256, "lr": 0.1,
              "schedule": "step", "seed": seed, "eval_pass": False, "inject_noise": noise}
    atomic_write_json(out / "meta.json", {
        "name": out.name, "source": SOURCE, "classes": class_names, "model": "resnet18", "config": config,
        "image_shape": [3, IMAGE_SIZE, IMAGE_SIZE], "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "has_ground_truth": True, "has_test_split": False, "device": "synthetic",
        "versions": {"csl_core": __version__}, "synthetic": True,
        "format_version": FORMAT_VERSION, "num_samples": samples, "epochs": epochs, "finished_epochs": epochs,
        "fields": list(EPOCH_FIELDS), "created": now, "updated": now, "completed": True})
    return RunStore(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="run folder to create (e.g. runs/synthetic-imagenet)")
    parser.add_argument("--samples", type=int, default=IMAGENET_TRAIN)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.01, help="fraction of flipped labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing run folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    need = args.samples * args.epochs * (4 * 4 + 1) + args.samples * 80
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if need > free * 0.9:
        raise SystemExit(f"{out}: needs about {need / 2**30:.1f} GiB, only {free / 2**30:.1f} GiB free")
    if args.force and out.exists():
        shutil.rmtree(out)
    began = time.perf_counter()
    store = make_run(out, samples=args.samples, epochs=args.epochs, classes=args.classes, noise=args.noise,
                     seed=args.seed)
    scoring = time.perf_counter()
    store.keep_derived()  # as the trainer does after its last epoch: the dashboard then reads small files
    print(f"scored {store.num_samples:,} samples in {time.perf_counter() - scoring:.0f}s")
    size = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    print(f"wrote {store.path}: {store.num_samples:,} samples x {store.finished_epochs} epochs, "
          f"{size / 2**30:.2f} GiB, {time.perf_counter() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
