"""Source specs (the ``--data`` option), the one table of source kinds and their defaults, and building
a seeded :class:`TrainingSet` from a spec."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import preflight
from .builtin import DEBIAN_FASHION_MNIST, load_cifar, load_demo, load_fashion_mnist
from .files import load_csv, load_imagefolder
from .noise import inject_duplicates, inject_label_noise
from .types import DataError, ImageSource, TrainingSet


@dataclass(frozen=True)
class SourceKind:
    """One kind of ``--data`` source and the defaults a run on it takes unless told otherwise.

    ``usage`` is how the spec is written; ``epochs``, ``model``, ``batch_size`` and ``lr`` are the
    source's training recipe (``None``: the engine's, ``TrainConfig``'s; the user's own files and CIFAR
    get the recipe that measured best on real label noise, docs/bench/cifar10n.md); ``noise`` the fraction of
    labels flipped and ``duplicate_pairs`` the pairs injected per sample (the demo ships with errors to
    find, real data has its own);
    ``augment`` turns random crop on and ``flip`` adds horizontal flips to it (not for Fashion-MNIST,
    whose images all face one way).

    ``load(args, image_size, download, progress)`` reads the source (``args``: the spec's paths) into
    ``(train, test or None)``; ``check(args)`` is the cheap look before a job starts
    (:mod:`csl_core.data.preflight`; by default: a path given must exist), returning a one-line summary.
    ``label`` is how the Run page offers the source (short enough to read in full in its select box at 1280 px),
    ``path_prompt`` what it asks for (``None``: no path).
    """

    usage: str
    load: Callable[..., tuple[ImageSource, ImageSource | None]]
    label: str = ""
    path_prompt: str | None = None
    check: Callable[[list[str]], str] | None = None
    epochs: int | None = None
    model: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    noise: float = 0.0
    duplicate_pairs: float = 0.0
    augment: bool = True
    flip: bool = True


#: Every source kind, in the order a person is offered them: the one table of their defaults, read by the
#: data layer, the trainer, the CLI and the Run page.
def _own_files(kind: str, reader):
    """The loader of the person's own files: a path is required; images resized to ``image_size`` (32)."""
    def load(args, image_size=None, download=False, progress=False):
        if not args or not args[0]:
            raise DataError(f"{kind} needs a path: --data {kind}:PATH")
        return reader(*args, image_size=image_size or 32, progress=progress), None
    return load


SOURCES: dict[str, SourceKind] = {
    "demo": SourceKind("demo", lambda args, **_: load_demo(),
                       "Demo: digits, 5% of labels flipped",
                       check=preflight.check_demo, epochs=12, noise=0.05, duplicate_pairs=0.005, augment=False,
                       flip=False),
    "fashion-mnist": SourceKind(
        "fashion-mnist[:DIR]", lambda args, download=False, **_: load_fashion_mnist(args[0] if args else None,
                                                                                    download=download),
        "Fashion-MNIST (installed)" if DEBIAN_FASHION_MNIST.exists() else "Fashion-MNIST",
        check=preflight.check_fashion_mnist, flip=False),
    # CIFAR's natural images take the recipe of one's own files: on CIFAR-10N the small CNN's recipe ranked
    # human label errors at 0.840 AUROC against the airbench recipe's 0.902 (docs/bench/cifar10n.md)
    "cifar10": SourceKind(
        "cifar10[:DIR]", lambda args, download=False, **_: load_cifar("cifar10", args[0] if args else None,
                                                                      download=download),
        "CIFAR-10", "Folder holding cifar-10-batches-py (empty: the usual cache)", preflight.check_cifar10,
        epochs=20, model="airbench", batch_size=256, lr=0.2),
    "cifar100": SourceKind(
        "cifar100[:DIR]", lambda args, download=False, **_: load_cifar("cifar100", args[0] if args else None,
                                                                       download=download),
        "CIFAR-100", "Folder holding cifar-100-python (empty: the usual cache)", preflight.check_cifar100,
        epochs=20, model="airbench", batch_size=256, lr=0.2),
    "imagefolder": SourceKind("imagefolder:ROOT", _own_files("imagefolder", load_imagefolder),
                              "My images: one folder per class", "Folder (ROOT/<class>/<image>)",
                              preflight.check_imagefolder, epochs=20, model="airbench", batch_size=256, lr=0.2),
    "csv": SourceKind("csv:FILE[:ROOT]", _own_files("csv", load_csv), "My images: a CSV of path,label",
                      "CSV file (paths relative to its folder)", preflight.check_csv, epochs=20, model="airbench",
                      batch_size=256, lr=0.2),
}
SOURCE_KINDS = tuple(SOURCES)


SINGLE_PATH_KINDS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``kind:arg1:arg2`` into its kind and arguments.

    Sources that take one path (``imagefolder``, ``cifar10``, ...) take everything after the first
    ``:`` as that path, colons included (``imagefolder:/data/pre:v2``). ``csv:FILE:ROOT`` splits at
    the colon between its two paths; a colon inside either path is written ``%3A`` (and a ``%`` as
    ``%25``), so the split is never a guess. Windows drive letters (``C:\\``) stay whole.
    """
    if not isinstance(spec, str) or "\x00" in spec:
        raise DataError(f"data source {spec!r} is not a text spec like imagefolder:PATH")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in SOURCE_KINDS:
        raise DataError(f"unknown data source {spec!r}: use one of "
                        + " | ".join(kind.usage for kind in SOURCES.values()))
    if kind == "demo":
        if rest:
            raise DataError(f"data source {spec!r}: demo takes no path")
        return kind, []
    if kind in SINGLE_PATH_KINDS:
        return kind, [_unquote(rest)] if rest else []
    args: list[str] = []
    for part in rest.split(":") if rest else []:
        if args and len(args[-1]) == 1 and args[-1].isalpha() and part.startswith(("\\", "/")):
            args[-1] += ":" + part
        else:
            args.append(part)
    if len(args) > 2:
        raise DataError(f"data source {spec!r}: csv takes FILE or FILE:ROOT, but this has {len(args)} parts; "
                        "write a colon that is part of a path as %3A (e.g. csv:/data/pre%3Av2/labels.csv)")
    return kind, [_unquote(a) for a in args]


def _unquote(path: str) -> str:
    """``%3A`` -> ``:`` and ``%25`` -> ``%`` (the only escapes a spec has)."""
    return re.sub("%(3[aA]|25)", lambda m: ":" if m.group(1).lower() == "3a" else "%", path)


def quote_path(path: str) -> str:
    """A path as it goes into a spec: ``%`` and ``:`` escaped (see :func:`parse_spec`)."""
    return str(path).replace("%", "%25").replace(":", "%3A")


def source_kind(spec: str) -> SourceKind:
    """The :data:`SOURCES` entry of ``spec``'s kind; :class:`DataError` for an unknown kind."""
    return SOURCES[parse_spec(spec)[0]]


def default_noise(spec: str) -> float:
    """The fraction of labels flipped when no ``--inject-noise`` is given: the demo's 5%, else none."""
    return source_kind(spec).noise


def default_duplicates(spec: str, num_samples: int) -> int:
    """Duplicate pairs injected when no ``--inject-duplicates`` is given: about 0.5% of N for the demo
    (at least one pair), none for the other sources."""
    share = source_kind(spec).duplicate_pairs
    return max(1, int(round(share * num_samples))) if share else 0


def load_source(spec: str, *, image_size: int | None = None, download: bool = False,
                progress: bool = False) -> tuple[ImageSource, ImageSource | None]:
    """Load the train split (and test split, where the source has one) named by ``spec``."""
    kind, args = parse_spec(spec)
    return SOURCES[kind].load(args, image_size=image_size, download=download, progress=progress)


def check_source(spec: str) -> str:
    """Check that the source named by ``spec`` (the ``--data`` syntax) is there; return a one-line summary.

    Reads folder listings and a CSV header only (no image is decoded), so a form can check a path as it is
    typed. Raises :class:`DataError` naming what is missing and where. The built-in ``demo`` always passes;
    Fashion-MNIST and CIFAR pass when their files are found (no download is assumed)."""
    kind, args = parse_spec(spec)
    check = SOURCES[kind].check
    if check is not None:
        return check(args)
    if args and args[0] and not Path(args[0]).exists():   # a source without a check of its own
        raise DataError(f"{kind}: {args[0]!r} does not exist")
    return f"a {kind} source"


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
    import pandas as pd  # loaded here, not at import: `csl-clean --help` stays fast

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
    if num_classes < 2 and (noise or pairs_wanted):
        asked = "--inject-noise" if noise else "--inject-duplicates"
        raise DataError(f"{spec}: {asked} needs at least two classes to flip labels between, but this source "
                        f"has one ({source.classes[0]!r}); add a class or leave {asked} out")
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
