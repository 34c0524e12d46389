"""Near-duplicate precision and recall: planted copies of known kinds in real images, every fingerprint,
every candidate threshold; the table that picks the default.

    nohup nice -n 5 python scripts/bench_duplicates.py --images 10000 --per-kind 100 \
        --out bench-results/duplicates &

For each image set (Fashion-MNIST from Debian's files, the CIFAR-10N training JPEGs) it draws
``--images`` images, plants ``--per-kind`` copies of each kind (csl_core/bench/duplicates.py), and
groups them with each fingerprint at each threshold: recall per kind, pairs found, and the samples
grouped with something that is not their planted partner. Writes ``table.csv``, ``table.md`` and, for
the picked threshold, ``false-<set>.png``: every false group, one row each, to look at.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

THRESHOLDS = {"aligned": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4], "aligned-loose": [0.1, 0.15, 0.2, 0.25, 0.3],
              "thumbnail": [0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3],
              "phash": [0, 2, 4, 6, 8, 10, 12], "dhash": [0, 2, 4, 6, 8, 10, 12],
              "pdq": [0, 8, 16, 24, 32, 40, 48]}
PRODUCT = "aligned"  # the product's method: its rows pick the default ratio
SHORT = {"recall_copy": "copy", "recall_jpeg": "jpeg", "recall_resize": "resize", "recall_crop": "crop",
         "recall_exposure": "exposure", "recall_text": "text"}


def false_sheet(images: np.ndarray, groups: np.ndarray, false: np.ndarray, file: Path, limit: int = 60) -> int:
    """Every group holding a falsely grouped sample, one row of images each (at most ``limit`` rows)."""
    from PIL import Image

    bad = sorted(set(groups[false].tolist()))
    rows = []
    for g in bad[:limit]:
        members = np.flatnonzero(groups == g)[:8]
        tiles = [images[m] if images.ndim == 4 and images.shape[-1] == 3 else
                 np.repeat(images[m].reshape(images.shape[1], images.shape[2], 1), 3, axis=-1) for m in members]
        tiles += [np.zeros_like(tiles[0])] * (8 - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    if rows:
        sheet = np.concatenate(rows, axis=0)
        Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.NEAREST).save(file)
    return len(bad)


def markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    from csl_core.bench.duplicates import (
        REFERENCE_RATIO,
        evaluate,
        false_grouping,
        known_duplicates,
        load_images,
        pick_threshold,
        plant,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="images drawn from each set")
    parser.add_argument("--per-kind", type=int, default=100, help="planted copies of each kind")
    parser.add_argument("--sets", default="fashion-mnist,cifar10n")
    parser.add_argument("--methods", default="aligned,aligned-loose,thumbnail,phash,dhash,pdq")
    parser.add_argument("--out", default="bench-results/duplicates")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, meta = [], {"load_average_at_start": os.getloadavg()[0], "images": args.images,
                        "per_kind": args.per_kind, "seconds": {}}
    kept = {}
    for name in args.sets.split(","):
        images, pairs = plant(load_images(name, args.images), args.per_kind)
        known = known_duplicates(images)
        planted = np.zeros(len(images), bool)
        planted[pairs["original"]] = planted[pairs["copy"]] = True
        sheet = false_grouping(known, pairs)
        meta[f"own_duplicate_groups_{name}"] = false_sheet(images, known, sheet, out / f"own-{name}.png", limit=200)
        for method in args.methods.split(","):
            if method == "pdq" and importlib.util.find_spec("pdqhash") is None:
                print("pdq left out: pip install pdqhash to measure it", flush=True)
                continue
            began = time.perf_counter()
            table, groups = evaluate(images, pairs, method=method, thresholds=THRESHOLDS[method], known=known)
            meta["seconds"][f"{name}/{method}"] = round(time.perf_counter() - began, 1)
            table.insert(0, "set", name)
            tables.append(table)
            if method == PRODUCT:
                kept[name] = (images, pairs, groups, known)
            print(name, method, meta["seconds"][f"{name}/{method}"], "s", flush=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "table.csv", index=False)
    picked = pick_threshold(table[table["method"] == PRODUCT])
    meta["picked_ratio"] = picked
    meta["reference_ratio"] = REFERENCE_RATIO
    for name, (images, pairs, groups, known) in kept.items():
        false = false_grouping(groups[picked], pairs, known)
        meta[f"false_groups_{name}"] = false_sheet(images, groups[picked], false, out / f"false-{name}.png")
    shown = table.rename(columns=SHORT).assign(
        false_share=lambda t: (100 * t["false_share"]).round(2),
        false_share_not_known=lambda t: (100 * t["false_share_not_known"]).round(2))
    shown = shown.rename(columns={"false_share": "false % (all)", "pairs_found": "found",
                                  "false_share_not_known": "false % (own duplicates left out)"})
    columns = ["set", "method", "threshold", *SHORT.values(), "found", "pairs", "false % (all)",
               "false % (own duplicates left out)", "largest_group"]
    (out / "table.md").write_text(markdown(shown[columns]))
    meta["load_average_at_end"] = os.getloadavg()[0]
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
