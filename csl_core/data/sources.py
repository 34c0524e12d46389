"""Source specs (the ``--data`` option) and building a seeded :class:`TrainingSet` from one."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .builtin import load_cifar, load_demo, load_fashion_mnist
from .files import load_csv, load_imagefolder
from .noise import inject_duplicates, inject_label_noise
from .types import DataError, ImageSource, TrainingSet

SOURCE_KINDS = ("demo", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "csv")


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``kind:arg1:arg2`` into its kind and arguments; Windows drive letters stay whole."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in SOURCE_KINDS:
        raise DataError(f"unknown data source {spec!r}: use one of {', '.join(SOURCE_KINDS)} "
                        "(e.g. demo, fashion-mnist, imagefolder:PATH, csv:FILE[:ROOT])")
    args: list[str] = []
    for part in rest.split(":") if rest else []:
        if args and len(args[-1]) == 1 and args[-1].isalpha() and part.startswith(("\\", "/")):
            args[-1] += ":" + part
        else:
            args.append(part)
    return kind, args


def default_noise(spec: str) -> float:
    """The demo ships with 5% injected noise; every other source trains on its labels as they are."""
    return 0.05 if parse_spec(spec)[0] == "demo" else 0.0


def default_duplicates(spec: str, num_samples: int) -> int:
    return max(1, int(round(0.005 * num_samples))) if parse_spec(spec)[0] == "demo" else 0


def load_source(spec: str, *, image_size: int | None = None, download: bool = False,
                progress: bool = False) -> tuple[ImageSource, ImageSource | None]:
    """Load the train split (and test split, where the source has one) named by ``spec``."""
    kind, args = parse_spec(spec)
    if kind == "demo":
        return load_demo()
    if kind == "fashion-mnist":
        return load_fashion_mnist(args[0] if args else None, download=download)
    if kind in ("cifar10", "cifar100"):
        return load_cifar(kind, args[0] if args else None, download=download)
    if not args or not args[0]:
        raise DataError(f"{kind} needs a path: --data {kind}:PATH")
    size = image_size or 32
    if kind == "imagefolder":
        return load_imagefolder(args[0], image_size=size, progress=progress), None
    return load_csv(args[0], args[1] if len(args) > 1 else None, image_size=size, progress=progress), None


def build_training_set(spec: str, *, subset: int | None = None, inject_noise: float | None = None,
                       inject_duplicates_pairs: int | None = None, seed: int = 0,
                       image_size: int | None = None, download: bool = False,
                       progress: bool = False, noise_kind: str = "symmetric",
                       noise_map: np.ndarray | None = None,
                       loaded: tuple[ImageSource, ImageSource | None] | None = None) -> TrainingSet:
    """Load ``spec`` and apply the seeded subset and injections; the same arguments give the same set.

    ``inject_noise`` / ``inject_duplicates_pairs`` of ``None`` take the source's default (the demo
    injects 5% noise and about 0.5% of N duplicate pairs; other sources none). ``noise_kind`` and
    ``noise_map`` say where flipped labels go (:func:`csl_core.data.noise.inject_label_noise`).
    ``loaded`` is ``load_source(spec, ...)``'s result when the caller has already read it.
    """
    source, test = loaded or load_source(spec, image_size=image_size, download=download, progress=progress)
    if len(source) == 0:
        raise DataError(f"{spec}: no usable images were found")
    num_classes = len(source.classes)
    rng = np.random.default_rng(seed)
    image_index = np.arange(len(source))
    if subset is not None and subset < len(source):
        if subset <= 0:
            raise DataError(f"--subset must be positive, got {subset}")
        image_index = np.sort(rng.choice(len(source), size=subset, replace=False))
    original = source.labels[image_index]
    noise = default_noise(spec) if inject_noise is None else inject_noise
    pairs_wanted = (default_duplicates(spec, len(image_index)) if inject_duplicates_pairs is None
                    else inject_duplicates_pairs)
    labels, flipped = inject_label_noise(original, noise, num_classes, seed=seed + 1, kind=noise_kind,
                                         class_map=None if noise_map is None else np.asarray(noise_map))
    pairs = np.empty((0, 2), dtype=np.int64)
    if pairs_wanted:
        image_index, labels, pairs = inject_duplicates(image_index, labels, pairs_wanted, num_classes,
                                                       seed=seed + 2, exclude=flipped)
    n = len(image_index)
    samples = pd.DataFrame({
        "index": np.arange(n),
        "sample_id": [source.ids[i] for i in image_index],
        "label": labels,
        "class_name": [source.classes[c] for c in labels],
        "image_index": image_index,
    })
    if source.paths is not None:
        samples["path"] = [source.paths[i] for i in image_index]
    if pairs_wanted:
        # A duplicate keeps its own id so that the two members stay distinguishable in every table.
        samples.loc[pairs[:, 0], "sample_id"] = [f"{source.ids[j]}#duplicate-of-{b}"
                                                 for j, b in zip(image_index[pairs[:, 1]], pairs[:, 1])]
    if noise or pairs_wanted:
        true_label = source.labels[image_index]
        duplicate_of = np.full(n, -1)
        duplicate_of[pairs[:, 0]] = pairs[:, 1]
        duplicate_of[pairs[:, 1]] = pairs[:, 0]
        samples["true_label"] = true_label
        samples["is_mislabeled"] = labels != true_label
        samples["is_duplicate"] = duplicate_of >= 0
        samples["duplicate_of"] = duplicate_of
    return TrainingSet(spec=spec, source=source, samples=samples, test=test)
