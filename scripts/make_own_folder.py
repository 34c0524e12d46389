"""Build a benchmark case of the "own folder" shape: a folder of PNG images, one subfolder per class with the
real Fashion-MNIST class names, a few percent of the images filed under a wrong class and a few near-duplicate
copies filed under another class than their original. The truth goes beside the folder, never inside it.

    python -m scripts.make_own_folder OUT --seed 1 [--images 1205 --wrong 40 --copies 5 --split test]

Writes ``OUT/images/<class>/<name>.png`` and ``OUT/truth.csv`` (``path,label,true_label,kind`` with ``path``
relative to ``OUT/images``; ``kind`` is clean / wrong / copy). Half of the wrong labels go to the class the
image is most often confused with (shirt <-> T-shirt, pullover <-> coat, sneaker <-> sandal ...), half to a
uniformly drawn other class. Train it as a user would:
``csl-clean train --data imagefolder:OUT/images --epochs 20 --out RUN``, then score it with
``python -m scripts.bench_trust RUN:OUT/truth.csv``.
"""
from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle_boot"]
# the class a person most often mistakes each class for (Fashion-MNIST's confusion among people and nets)
CONFUSED = {0: 6, 1: 3, 2: 4, 3: 1, 4: 2, 5: 7, 6: 0, 7: 9, 8: 6, 9: 7}


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def near_copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near-duplicate: brightness change, or a resize round trip."""
    if rng.random() < 0.5:
        return ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    side = int(rng.integers(20, 27))
    return image.resize((side, side), Image.BILINEAR).resize(image.size, Image.BILINEAR)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images", type=int, default=1205)
    parser.add_argument("--wrong", type=int, default=40)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--split", choices=["train", "test"], default="test")
    parser.add_argument("--source", default=str(FMNIST))
    args = parser.parse_args(argv)
    prefix = "t10k" if args.split == "test" else "train"
    images = read_idx(Path(args.source) / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(Path(args.source) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(images), size=args.images + args.copies, replace=False)
    base, copy_sources = chosen[: args.images], rng.choice(chosen[: args.images], size=args.copies, replace=False)
    true = labels[base]
    given = true.copy()
    wrong = rng.choice(args.images, size=args.wrong, replace=False)
    for j, i in enumerate(wrong):
        if j % 2 == 0:
            given[i] = CONFUSED[int(true[i])]
        else:
            given[i] = int(rng.choice([c for c in range(len(CLASSES)) if c != true[i]]))
    out = Path(args.out)
    root = out / "images"
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    rows = []
    kinds = np.full(args.images, "clean", dtype=object)
    kinds[wrong] = "wrong"
    for i, index in enumerate(base):
        path = f"{CLASSES[given[i]]}/fm{args.split}-{int(index):05d}.png"
        Image.fromarray(images[index]).save(root / path)
        rows.append((path, CLASSES[given[i]], CLASSES[true[i]], kinds[i]))
    for index in copy_sources:
        original = int(labels[index])
        other = int(rng.choice([c for c in range(len(CLASSES)) if c != original]))
        path = f"{CLASSES[other]}/fm{args.split}-{int(index):05d}-copy.png"
        near_copy(Image.fromarray(images[index]), rng).save(root / path)
        rows.append((path, CLASSES[other], CLASSES[original], "copy"))
    with open(out / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "true_label", "kind"])
        writer.writerows(rows)
    print(f"{out}: {len(rows)} images, {args.wrong} wrong labels, {args.copies} copies under another class")


if __name__ == "__main__":
    main()
