"""Label-noise and duplicate injection for benchmarks: pure functions of arrays and a seed."""
from __future__ import annotations

import numpy as np

from ..errors import InputError

NOISE_KINDS = ("symmetric", "pairflip", "confusable")  # where injected label noise sends a flipped label


def pairflip_map(num_classes: int) -> np.ndarray:
    """The pair-flip map: class ``c`` becomes class ``(c + 1) % num_classes`` (Han et al., 2018)."""
    if num_classes < 2:
        raise InputError("label noise needs at least two classes")
    return (np.arange(num_classes) + 1) % num_classes


def confusable_map(confusion: np.ndarray) -> np.ndarray:
    """For each class, the other class it is most often mistaken for.

    ``confusion`` is ``(C, C)``: row = given (or true) class, column = predicted class, any counts
    or rates. Returns ``(C,)`` int64, never a class's own index; a row with no confusion at all
    falls back to the next class (``(c + 1) % C``), ties go to the lower class index.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] < 2:
        raise InputError(f"a confusion matrix must be square with at least two classes, got shape {confusion.shape}")
    if not np.all(np.isfinite(confusion)) or (confusion < 0).any():
        raise InputError("a confusion matrix holds non-negative finite counts or rates")
    off = confusion.copy()
    np.fill_diagonal(off, -np.inf)
    target = off.argmax(axis=1)
    fallback = (np.arange(len(off)) + 1) % len(off)
    return np.where(off.max(axis=1) > 0, target, fallback).astype(np.int64)


def inject_label_noise(labels: np.ndarray, fraction: float, num_classes: int, *,
                       seed: int, exclude: np.ndarray | None = None, kind: str = "symmetric",
                       class_map: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``floor(fraction * N)`` labels, chosen uniformly at random (seeded), to another class.

    ``kind`` says where a flipped label goes:

    - ``symmetric``: to any other class, uniformly;
    - ``pairflip``: class ``c`` to ``(c + 1) % C``, or to ``class_map[c]`` when a map is given;
    - ``confusable``: to ``class_map[c]``, the class ``c`` is confused with most (build one from a
      confusion matrix with :func:`confusable_map`); required for this kind.

    A ``class_map`` entry of ``-1`` leaves that class's samples untouched (they are never chosen), so
    a map may name only the confusable pairs. Returns ``(noisy_labels, flipped_indices)``; indices in
    ``exclude`` are never chosen.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"noise fraction must be in [0, 1), got {fraction}")
    if kind not in NOISE_KINDS:
        raise InputError(f"unknown noise kind {kind!r}; known kinds: {', '.join(NOISE_KINDS)}")
    labels = np.asarray(labels, dtype=np.int64)
    if fraction == 0:
        return labels.copy(), np.empty(0, dtype=np.int64)
    if num_classes < 2:
        raise InputError(f"label noise ({fraction:g}) needs at least two classes, got {num_classes}")
    if kind == "confusable" and class_map is None:
        raise InputError("confusable noise needs a class map (e.g. confusable_map(confusion_matrix))")
    if kind == "pairflip" and class_map is None:
        class_map = pairflip_map(num_classes)
    if class_map is not None:
        class_map = _checked_map(class_map, num_classes)
    rng = np.random.default_rng(seed)
    eligible = np.ones(len(labels), dtype=bool)
    if exclude is not None and len(exclude):
        eligible[np.asarray(exclude, dtype=np.int64)] = False
    if class_map is not None and kind != "symmetric":
        eligible &= class_map[labels] >= 0
    candidates = np.flatnonzero(eligible)
    count = int(np.floor(fraction * len(labels)))
    if count > len(candidates):
        raise InputError(f"cannot flip {count} labels: only {len(candidates)} samples are eligible")
    flipped = np.sort(rng.choice(candidates, size=count, replace=False))
    noisy = labels.copy()
    if kind == "symmetric":
        # An offset in 1..C-1 gives each other class the same chance and never the sample's own.
        noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=count)) % num_classes
    else:
        noisy[flipped] = class_map[labels[flipped]]
    return noisy, flipped


def _checked_map(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    class_map = np.asarray(class_map)
    if class_map.shape != (num_classes,) or class_map.dtype.kind not in "iu":
        raise InputError(f"a class map needs one integer target per class ({num_classes}), got "
                         f"{class_map.dtype} of shape {class_map.shape}")
    class_map = class_map.astype(np.int64)
    if ((class_map < -1) | (class_map >= num_classes)).any():
        raise InputError(f"class map targets must lie in 0..{num_classes - 1} (or -1: not flipped), "
                         f"got {class_map.tolist()}")
    own = np.flatnonzero(class_map == np.arange(num_classes))
    if len(own):
        raise InputError(f"class map sends class {int(own[0])} to itself; a flipped label must change")
    return class_map


def parse_class_map(text: str, classes: list[str]) -> np.ndarray:
    """``"shirt:t-shirt,coat:pullover"`` (class names or indices) -> a ``(C,)`` class map, ``-1`` where
    a class is not named. A pair ``a<->b`` is not implied: write both directions to flip both ways."""
    index = {name: i for i, name in enumerate(classes)}
    class_map = np.full(len(classes), -1, dtype=np.int64)

    def lookup(name: str) -> int:
        name = name.strip()
        if name in index:
            return index[name]
        if name.lstrip("-").isdigit() and 0 <= int(name) < len(classes):
            return int(name)
        raise InputError(f"noise map: unknown class {name!r}; classes are {', '.join(classes)} "
                         f"(or indices 0..{len(classes) - 1})")

    for part in (p for p in text.split(",") if p.strip()):
        if part.count(":") != 1:
            raise InputError(f"noise map: {part!r} is not SOURCE:TARGET (e.g. shirt:t-shirt)")
        source, target = part.split(":")
        a, b = lookup(source), lookup(target)
        if class_map[a] >= 0 and class_map[a] != b:
            raise InputError(f"noise map: class {classes[a]!r} is mapped twice")
        class_map[a] = b
    if (class_map < 0).all():
        raise InputError("noise map is empty; give pairs SOURCE:TARGET separated by commas")
    return _checked_map(class_map, len(classes))


def inject_duplicates(image_index: np.ndarray, labels: np.ndarray, num_pairs: int, num_classes: int, *,
                      seed: int, exclude: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duplicates with conflicting labels: in each pair ``(a, b)``, ``a`` shows ``b``'s image and gets
    a label other than ``b``'s.

    Returns ``(image_index, labels, pairs)`` with ``pairs`` an ``(num_pairs, 2)`` array of disjoint pairs.
    """
    if num_classes < 2:
        raise InputError("conflicting duplicates need at least two classes")
    image_index = np.asarray(image_index, dtype=np.int64).copy()
    labels = np.asarray(labels, dtype=np.int64).copy()
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude):
        candidates = np.setdiff1d(candidates, exclude)
    if 2 * num_pairs > len(candidates):
        raise InputError(f"cannot make {num_pairs} disjoint pairs from {len(candidates)} eligible samples")
    chosen = rng.choice(candidates, size=2 * num_pairs, replace=False)
    pairs = chosen.reshape(num_pairs, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    image_index[a] = image_index[b]
    labels[a] = (labels[b] + rng.integers(1, num_classes, size=num_pairs)) % num_classes
    return image_index, labels, pairs
