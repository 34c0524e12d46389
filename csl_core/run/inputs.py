"""Checks of what ``import`` reads from another tool, the same a training's data gets: arrays whose header
promises no more than the file holds, long tables without gaps, one value kind per array (losses finite and
>= 0, correctness 0/1, probabilities in [0, 1]), each path or id once, class names that are distinct, plain
and not repeated. Each refusal names the file and the sample, line or class."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.class_names import class_name
from ..errors import InputError
from .schema import check_losses, npy_header

#: Characters a class name may not hold: it becomes a line of ``classes.txt``, a folder name and page text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def load_npy(file: Path) -> np.ndarray:
    """A ``.npy`` file's array, after checking that the file holds the bytes its header declares: a header
    promising a huge shape is refused before anything is allocated. Never unpickles."""
    try:
        shape, _, dtype, missing = npy_header(file)
    except (OSError, ValueError) as e:
        raise InputError(f"{file}: not a plain numeric .npy array ({e})") from None
    if dtype.hasobject:
        raise InputError(f"{file}: holds Python objects, which are never loaded; save plain numbers")
    if missing:
        raise InputError(f"{file}: its header declares shape {shape} of {dtype}, {abs(missing)} bytes "
                         f"{'more' if missing > 0 else 'less'} than the file holds; it is truncated or not what "
                         "it says")
    return np.array(np.load(file, mmap_mode="r", allow_pickle=False))


def long_to_wide(frame: pd.DataFrame, file: Path) -> np.ndarray:
    """A long table ``index, epoch, value`` as ``(samples, epochs)``; every (sample, epoch) pair must appear
    exactly once (a gap would read as "not seen" and lower that sample's CSL)."""
    values = [c for c in frame.columns if c not in ("index", "epoch")]
    if len(values) != 1:
        raise InputError(f"{file}: a long table has the columns index, epoch and one value column; found "
                         f"{list(frame.columns)}")
    if frame.duplicated(["index", "epoch"]).any():
        raise InputError(f"{file}: some (index, epoch) pairs appear twice")
    wide = frame.pivot(index="index", columns="epoch", values=values[0]).sort_index().sort_index(axis=1)
    if not np.array_equal(wide.index.to_numpy(), np.arange(len(wide))):
        raise InputError(f"{file}: the index column must number the samples 0..N-1 (found {len(wide)} distinct "
                         f"values from {wide.index.min()} to {wide.index.max()})")
    present = frame.assign(_seen=True).pivot(index="index", columns="epoch", values="_seen")
    missing = present.reindex(index=wide.index, columns=wide.columns).isna().to_numpy()
    if missing.any():
        row, column = np.argwhere(missing)[0]
        raise InputError(f"{file}: sample {wide.index[row]} has no row for epoch {wide.columns[column]} "
                         f"({int(missing.sum())} (index, epoch) pairs missing); every sample needs a value in "
                         "every epoch")
    return wide.to_numpy(np.float64)


def check_square(array: np.ndarray, n: int, file: Path, layout: str | None) -> np.ndarray:
    """An ``(n, n)`` array (as many epochs as samples) read in the orientation ``layout`` names; without one
    it is ambiguous and refused."""
    if layout == "samples-epochs":
        return array
    if layout == "epochs-samples":
        return array.T
    raise InputError(f"{file}: shape {array.shape} has as many epochs as samples, so whether rows are samples or "
                     "epochs cannot be told; pass --layout samples-epochs or epochs-samples, or a long table "
                     "(index, epoch, value)")


def check_embeddings(values: np.ndarray, n: int, file: Path) -> np.ndarray:
    """``(n, features)`` embeddings of finite numbers (one inf would be every sample's nearest neighbour),
    checked before any run folder is made."""
    values = np.asarray(values)
    if values.ndim != 2 or len(values) != n or values.dtype.kind not in "fiu":
        raise InputError(f"{file}: embeddings of shape {values.shape} ({values.dtype}); expected ({n}, features)")
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise InputError(f"{file}: the embeddings of {int((~finite).sum())} sample(s) are not finite numbers (sample "
                         f"{int(np.flatnonzero(~finite)[0])} first); save the features of a training that did not "
                         "diverge, or import without --embeddings")
    return values


def check_values(name: str, values: np.ndarray, file: Path) -> np.ndarray:
    """Per-epoch array ``name`` ``(samples, epochs)`` checked for its kind of value; returns it as stored."""
    values = np.asarray(values)
    if name in ("loss", "eval_loss"):
        for epoch in range(values.shape[1]):
            check_losses(values[:, epoch].astype(np.float64), np.arange(len(values)), f"{file}, epoch {epoch + 1}")
        return values.astype(np.float32)
    if name == "correct":
        bad = ~np.isin(values, (0, 1)) if values.dtype != bool else np.zeros(values.shape, bool)
        if bad.any():
            sample, epoch = np.argwhere(bad)[0]
            value = values[sample, epoch].item()
            raise InputError(f"{file}: 'correct' of sample {sample} in epoch {epoch + 1} is {value!r}; correctness "
                             "is 0 or 1 (True or False)")
        return values.astype(bool)
    if name in ("p_given", "p_max"):
        check_probabilities(values, file)
    elif not np.isfinite(values).all():
        sample = int(np.argwhere(~np.isfinite(values))[0][0])
        raise InputError(f"{file}: '{name}' of sample {sample} is not a finite number")
    return values.astype(np.float32)


def check_probabilities(values: np.ndarray, file: Path) -> None:
    """Probabilities must be finite numbers in [0, 1]; the first bad one is named by its sample."""
    values = np.asarray(values)
    bad = ~(np.isfinite(values) & (values >= 0) & (values <= 1))
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise InputError(f"{file}: the probability of sample {where[0]} at {where[1:]} is {values[where].item()!r}; "
                         "probabilities are finite numbers in [0, 1]")


def check_unique(values: pd.Series, file: Path, column: str) -> None:
    """Each path or id once: a repeated one would fold several samples into one downstream (FiftyOne)."""
    repeated = values.duplicated(keep=False).to_numpy()
    if repeated.any():
        lines = np.flatnonzero(repeated)[:2] + 2
        raise InputError(f"{file}, lines {lines[0]} and {lines[1]}: {column} {values.iloc[lines[0] - 2]!r} appears "
                         f"more than once ({int(values.duplicated().sum())} repeated); each sample appears once")


def check_class_names(names: Sequence[str], where: str) -> list[str]:
    """Class names as a training accepts them: not empty, no line breaks or control characters, none
    repeated, none differing from another only in case or surrounding space (``Bag`` and ``bag``)."""
    names = [class_name(n, where) for n in names]   # NFC; an invisible character refused
    folded: dict[str, str] = {}
    for name in names:
        if not name.strip() or _CONTROL.search(name):
            raise InputError(f"{where}: class name {name!r} is empty or holds a line break or control character")
        key = name.strip().casefold()
        if key in folded:
            same = "is repeated" if folded[key] == name else f"and {folded[key]!r} differ only in case or spacing"
            raise InputError(f"{where}: class name {name!r} {same}; each class is named once")
        folded[key] = name
    if len(names) < 2:
        raise InputError(f"{where}: a run needs at least two classes, got {names}")
    return names
