"""Sweep the training recipe of a label-noise protocol for detection quality per unit of training time.

Each variant changes one thing from the ``csv`` source's recipe (airbench CNN, 20 epochs, batch 256, lr
0.2, crop + flip): the learning rate, the width of the network, the number of epochs, augmentation; one
more is the built-in sources' former recipe (the small CNN, 15 epochs, batch 128, lr 0.05). Every variant is
one ``bench-real`` cell (the noisy column trained through the ordinary ``csv:`` source, scored against
the trusted column), all in one ``--out`` folder, so a rerun reuses what has finished; ``sweep.json``
and ``sweep.md`` gather them. Used to choose the recipe of the user's own files (docs/bench/cifar10n.md):

    python -m scripts.sweep_recipe --labels ../shared/data/cifar10n/labels.csv --root DIR \\
        --column aggre_label --subset 10000 --out bench-results/sweep-cifar10n
    python -m scripts.sweep_recipe --labels fmnist-confusable.csv --column confusable_label \\
        --out bench-results/sweep-fmnist
    python -m scripts.sweep_recipe ... --only default,lr0.4   # some variants
"""
from __future__ import annotations

import argparse
from pathlib import Path

from csl_core.bench.real_noise import RealNoiseBenchmark, RealNoiseConfig
from csl_core.run.files import atomic_write_bytes, atomic_write_json

# name -> the RealNoiseConfig fields it changes from the source's recipe
VARIANTS = {
    "default": {},
    "lr0.1": {"lr": 0.1},
    "lr0.4": {"lr": 0.4},
    "width0.5": {"model": "airbench-x0.5"},
    "width2": {"model": "airbench-x2"},
    "epochs10": {"recipe_epochs": 10},
    "epochs30": {"recipe_epochs": 30},
    "no-augment": {"augment": False},
    # the recipe the built-in sources had: the small 2-conv CNN, 15 epochs, batch 128, lr 0.05
    "small-cnn": {"model": "small-cnn", "lr": 0.05, "batch_size": 128, "recipe_epochs": 15},
}
SHOWN = ("fused", "csl", "aum", "final_loss", "knn_disagreement")


def sweep(labels: str, root: str | None, column: str, subset: int | None, seed: int, out: Path,
          names: list[str], quiet: bool = False) -> list[dict]:
    """Run each named variant (reusing finished runs) and return one row per variant."""
    rows = []
    for name in names:
        config = RealNoiseConfig(labels=labels, root=root, columns=(column,), seeds=(seed,), subset=subset,
                                 **VARIANTS[name])
        (cell,) = RealNoiseBenchmark(config, out, quiet=quiet).run()["cells"]
        rows.append({"variant": name, "changes": VARIANTS[name], "model": cell["model"], "lr": cell["lr"],
                     "batch_size": cell["batch_size"], "epochs": cell["epochs"], "augment": cell["augment"],
                     "num_samples": cell["num_samples"],
                     "positives": cell["positives"], "train_accuracy": cell["train_accuracy"],
                     "training_seconds": cell["training_seconds"],
                     "seconds_per_epoch": cell["training_seconds"] / max(cell["epochs"], 1),
                     "auroc": {m: cell["methods"][m]["auroc"] for m in SHOWN if m in cell["methods"]},
                     "run": cell["run"]})
        write(rows, out, labels, column)
    return rows


def write(rows: list[dict], out: Path, labels: str, column: str) -> None:
    atomic_write_json(out / "sweep.json", {"labels": labels, "column": column, "rows": rows})
    lines = [f"# Recipe sweep: `{column}` of {labels}", "",
             "| variant | model | lr | batch | epochs | augment | s / epoch | training s | train acc | "
             + " | ".join(SHOWN) + " |", "| --- " * (9 + len(SHOWN)) + "|"]
    for r in rows:
        aurocs = " | ".join(f"{r['auroc'][m]:.4f}" if m in r["auroc"] else "" for m in SHOWN)
        augment = "no" if r["augment"] is False else "yes"
        lines.append(f"| {r['variant']} | {r['model']} | {r['lr']:g} | {r['batch_size']} | {r['epochs']} | {augment} | "
                     f"{r['seconds_per_epoch']:.1f} | {r['training_seconds']:.0f} | {r['train_accuracy']:.3f} | "
                     f"{aurocs} |")
    atomic_write_bytes(out / "sweep.md", ("\n".join(lines) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, help="label file with a path column, the noisy and the trusted one")
    parser.add_argument("--root", default=None, help="folder the paths are relative to (default: the file's folder)")
    parser.add_argument("--column", default="aggre_label", help="the noisy column to train on")
    parser.add_argument("--subset", type=int, default=None, help="a seeded random subset of N samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants: " + ", ".join(VARIANTS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    sweep(args.labels, args.root, args.column, args.subset, args.seed, args.out, names, args.quiet)
    print(f"results: {args.out / 'sweep.md'}, {args.out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
