"""Near-duplicate precision and recall: planted copies of known kinds in real images, every fingerprint
and peer, every candidate threshold; the table that picks the defaults.

    CSL_CIFAR10N_TRAIN=/path/to/cifar10n/train IMMACULATE_PYTHON=/path/to/py312-venv/bin/python \
        nohup nice -n 10 python scripts/bench_duplicates.py --images 5000 --per-kind 100 \
        --out bench-results/duplicates &

For each image set (Fashion-MNIST from Debian's files, the CIFAR-10N training JPEGs, and the same JPEGs
upsampled to 160 px: a photo-sized set) it draws ``--images`` images, plants ``--per-kind`` copies of
each kind (csl_core/bench/duplicates.py), and groups them with each method at each threshold: recall
per kind, pairs found, the samples grouped with something that is not their planted partner, and the
time. Methods: ours (``crops``: the product, the crop tier at each limit; ``aligned``: without the crop
tier, at each ratio; ``thumbnail``), imagehash's hashes (``phash``, ``dhash``, ``ahash``), ``pdq``
(pdqhash, where installed) and Immaculate (``immaculate-pdq``, ``-phash``, ``-sscd``,
``-sscd_distilled``, its own fixed thresholds; it needs Python >= 3.12, so it runs in its own virtual
environment, ``--immaculate-python``, on the images written as PNG files: a benchmark tool only, never a
dependency of the package). Writes ``table.csv``, ``table.md`` and, for the picked defaults,
``false-<set>.png``: every false group, one row each, to look at.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

THRESHOLDS = {"crops": [0, 0.002, 0.003, 0.004, 0.005, 0.006],
              "aligned": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4], "aligned-loose": [0.1, 0.15, 0.2, 0.25, 0.3],
              "thumbnail": [0.1, 0.2, 0.3],
              "phash": [0, 2, 4, 6, 8, 10], "dhash": [0, 2, 4, 6, 8, 10], "ahash": [0, 2, 4, 6, 8],
              "pdq": [0, 8, 16, 24, 32, 40, 48]}
IMMACULATE = ("immaculate-pdq", "immaculate-phash", "immaculate-sscd_distilled", "immaculate-sscd")
RATIO_METHOD = "aligned"  # its rows pick the default ratio (the crop tier left out)
PRODUCT = "crops"  # the product's method: its rows pick the crop tier's limit
SMALL_SETS = ("fashion-mnist", "cifar10n")  # the defaults are picked on these (the photo set is shown beside)
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


def immaculate_groups(images: np.ndarray, method: str, python: str, folder: Path) -> np.ndarray:
    """Immaculate's groups (``-1`` alone) over ``images`` written as PNG files into ``folder`` (once), by its
    command in the Python 3.12 environment ``python``: exact and near sets joined."""
    from PIL import Image

    from csl_core.bench.duplicates import pair_components

    if not any(folder.glob("*.png")):
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(
                folder / f"{i:07d}.png")
    code = ("import json, sys; from immaculate import find_duplicates; r = find_duplicates(sys.argv[1], sys.argv[2]); "
            "print(json.dumps([[p.name for p in s] for s in r.exact + r.near]))")
    done = subprocess.run([python, "-c", code, str(folder), method.removeprefix("immaculate-")], check=True,
                          capture_output=True, text=True)
    source, target = [np.arange(len(images))], [np.arange(len(images))]
    for members in json.loads(done.stdout):
        ids = np.array([int(Path(m).stem) for m in members])
        source.append(ids[:-1])
        target.append(ids[1:])
    component = pair_components(np.concatenate(source), np.concatenate(target), len(images))
    sizes = np.bincount(component)
    return np.where(sizes[component] > 1, component, -1)


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
        score_groups,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images drawn from each set")
    parser.add_argument("--per-kind", type=int, default=100, help="planted copies of each kind")
    parser.add_argument("--sets", default="fashion-mnist,cifar10n,cifar10n-photo")
    parser.add_argument("--methods", default=",".join(["crops", "aligned", "thumbnail", "phash", "dhash", "ahash",
                                                       "pdq", *IMMACULATE]))
    parser.add_argument("--cifar10n", default=None, help="folder of the CIFAR-10N training JPEGs "
                                                          "(default $CSL_CIFAR10N_TRAIN)")
    parser.add_argument("--immaculate-python", default=os.environ.get("IMMACULATE_PYTHON"),
                        help="the Python (>= 3.12) of a virtual environment with immaculate[sscd] installed "
                             "(default $IMMACULATE_PYTHON; without it Immaculate is left out)")
    parser.add_argument("--rows-from", default=None,
                        help="a table.csv of an earlier run on the same sets: its rows of the methods not run now "
                             "are kept (e.g. Immaculate's, which take minutes)")
    parser.add_argument("--out", default="bench-results/duplicates")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, meta = [], {"load_average_at_start": os.getloadavg()[0], "images": args.images,
                        "per_kind": args.per_kind, "seconds": {}, "load": {}}
    kept = {}
    for name in args.sets.split(","):
        images, pairs = plant(load_images(name, args.images, folder=args.cifar10n), args.per_kind)
        known = known_duplicates(images)
        sheet = false_grouping(known, pairs)
        meta[f"own_duplicate_groups_{name}"] = false_sheet(images, known, sheet, out / f"own-{name}.png", limit=200)
        with tempfile.TemporaryDirectory(prefix=f"dup-{name}-") as folder:
            for method in args.methods.split(","):
                if method == "pdq" and importlib.util.find_spec("pdqhash") is None:
                    print("pdq left out: pip install pdqhash to measure it", flush=True)
                    continue
                if method.startswith("immaculate-") and not args.immaculate_python:
                    print(f"{method} left out: no --immaculate-python", flush=True)
                    continue
                began = time.perf_counter()
                if method.startswith("immaculate-"):
                    groups = immaculate_groups(images, method, args.immaculate_python, Path(folder))
                    table = pd.DataFrame([score_groups(groups, pairs, method=method, threshold="fixed", known=known)])
                else:
                    table, groups = evaluate(images, pairs, method=method, thresholds=THRESHOLDS[method], known=known)
                seconds = round(time.perf_counter() - began, 1)
                meta["seconds"][f"{name}/{method}"] = seconds
                meta["load"][f"{name}/{method}"] = round(os.getloadavg()[0], 1)
                table.insert(0, "set", name)
                table["seconds"] = seconds
                tables.append(table)
                if method == PRODUCT:
                    kept[name] = (images, pairs, groups, known)
                print(name, method, seconds, "s", flush=True)
                pd.concat(tables, ignore_index=True).to_csv(out / "table.csv", index=False)  # as it goes
    table = pd.concat(tables, ignore_index=True)
    if args.rows_from:
        earlier = pd.read_csv(args.rows_from)
        earlier = earlier[~earlier["method"].isin(table["method"].unique())
                          & earlier["set"].isin(table["set"].unique())]
        table = pd.concat([table, earlier], ignore_index=True)
        table["order"] = table["set"].map({name: i for i, name in enumerate(args.sets.split(","))})
        table = table.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)
    table.to_csv(out / "table.csv", index=False)
    small = table[table["set"].isin(SMALL_SETS)]
    if (small["method"] == RATIO_METHOD).any():
        meta["picked_ratio"] = pick_threshold(small[small["method"] == RATIO_METHOD])
    if (small["method"] == PRODUCT).any():
        # all tiers together (sure and possible crops) within 0.5% of the samples, as for the ratio
        meta["picked_crop_limit"] = pick_threshold(small[small["method"] == PRODUCT])
    meta["reference_ratio"] = REFERENCE_RATIO
    for name, (images, pairs, groups, known) in kept.items():
        if "picked_crop_limit" in meta:
            false = false_grouping(groups[meta["picked_crop_limit"]], pairs, known)
            meta[f"false_groups_{name}"] = false_sheet(images, groups[meta["picked_crop_limit"]], false,
                                                       out / f"false-{name}.png")
    shown = table.rename(columns=SHORT).assign(
        false_share=lambda t: (100 * t["false_share"]).round(2),
        false_share_not_known=lambda t: (100 * t["false_share_not_known"]).round(2))
    if "false_share_crop_tier" in shown:
        shown["false_share_crop_tier"] = (100 * shown["false_share_crop_tier"]).round(2)
    shown = shown.rename(columns={"false_share": "false % (all)", "pairs_found": "found",
                                  "false_share_not_known": "false % (own duplicates left out)",
                                  "false_share_crop_tier": "of it crop tier %", "seconds": "time s"})
    columns = ["set", "method", "threshold", *SHORT.values(), "found", "pairs", "false % (all)",
               "false % (own duplicates left out)", "of it crop tier %", "largest_group", "time s"]
    shown = shown[[c for c in columns if c in shown.columns]].astype(object).fillna("")
    (out / "table.md").write_text("".join(f"\n#### {name}\n\n" + markdown(shown[shown["set"] == name])
                                          for name in shown["set"].unique()))
    meta["load_average_at_end"] = os.getloadavg()[0]
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
