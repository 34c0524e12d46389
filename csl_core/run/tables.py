"""Reading a run folder's files cheaply: ``meta.json`` parsed once per version, the sample table with
pyarrow, and the per-epoch arrays a slice of rows at a time."""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from stat import S_ISREG

import numpy as np
import pandas as pd

from ..errors import InputError
from .errors import RunError
from .files import atomic_write_json, open_checked, read_checked, read_npy_header
from .layout import FORMAT_VERSION, REPORT, array_name, max_bytes
from .schema import npy_header


class RowChunks:
    """A ``(samples, epochs)`` .npy read a slice of rows at a time with plain file reads.

    Scoring reads every row once. Through a memory map those pages would stay mapped into the
    reading process (2 GB of RSS for ImageNet x 100 epochs); read like this they stay in the OS cache.
    ``columns`` limits every slice to the first columns (the finished epochs).
    """

    def __init__(self, file: Path, columns: int):
        with open_checked(file) as f:
            shape, fortran_order, dtype, self._offset = read_npy_header(f)
        if fortran_order or len(shape) != 2:
            raise InputError(f"{file}: expected a C-ordered (samples, epochs) array, found shape {shape}")
        self._file, self._shape, self.dtype, self._columns = Path(file), shape, np.dtype(dtype), columns

    @property
    def shape(self) -> tuple[int, int]:
        """``(samples, finished epochs)``."""
        return self._shape[0], self._columns

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("RowChunks reads slices of rows only")
        start, stop, step = rows.indices(self._shape[0])
        if step != 1:
            raise TypeError("RowChunks reads contiguous rows only")
        width = self._shape[1]
        count = max(0, stop - start) * width
        with open_checked(self._file) as f:
            f.seek(self._offset + start * width * self.dtype.itemsize)
            block = np.fromfile(f, dtype=self.dtype, count=count)
        return block.reshape(-1, width)[:, : self._columns]


def read_sample_table(file: Path, limit: int | None = None) -> pd.DataFrame:
    """A run's ``samples.csv``: ids, class names and paths stay strings ("NA" is a name, not a gap); read
    through :func:`~csl_core.run.files.open_checked` (a FIFO or a link refused, a file over ``limit`` bytes
    never read).

    pyarrow's parser, where installed, reads 1.28M rows in a third of the time of pandas' own.
    """
    options = dict(keep_default_na=False, dtype={"sample_id": str, "class_name": str})
    with open_checked(file, limit) as f:
        try:
            return pd.read_csv(f, engine="pyarrow", **options)
        except ImportError:
            f.seek(0)
            return pd.read_csv(f, **options)


NEWER = "by a newer csl-clean"   # what a run from a newer version is refused with (not damaged)
#: ``meta.json`` past this size is refused unread (1 GiB of it took 2 GB to parse for each listing).
MAX_META_BYTES = 16 << 20
_meta_cache: dict[str, tuple[tuple[int, int, int], dict]] = {}
_meta_lock = threading.Lock()
_META_CACHE_SIZE = 64


def read_meta(file: Path, *, check: bool = True) -> dict:
    """``meta.json`` parsed and checked (:func:`check_meta`), from this process's cache while the file's
    mtime, size and inode are those it had when parsed (every write renames a new file into place).
    Treat the dict as read-only. A damaged or truncated file is a :class:`RunError` that names it;
    ``check=False`` skips :func:`check_meta` for a reader that needs only a field or two."""
    stat = os.lstat(file)
    if not S_ISREG(stat.st_mode):
        open_checked(file).close()   # says what it is instead (a link, a FIFO): never followed, never waited on
    if stat.st_size > MAX_META_BYTES:  # a run's meta.json is kilobytes: a huge one is never parsed
        raise RunError(f"{file} is damaged: {stat.st_size:,} bytes, more than any run's meta.json "
                       f"({MAX_META_BYTES >> 20} MiB at most); it is not read")
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    key = str(file)
    with _meta_lock:
        kept = _meta_cache.get(key)
    if kept is not None and kept[0] == stamp:
        if check:
            check_meta(kept[1], file)
        return kept[1]
    try:
        with open_checked(file, MAX_META_BYTES) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is damaged or unreadable ({e}); this run cannot be opened. Restore the "
                       "file from a backup, or train the run again") from e
    if not isinstance(meta, dict):
        raise RunError(f"{file} is damaged: it does not hold a JSON object")
    with _meta_lock:
        _meta_cache.pop(key, None)
        _meta_cache[key] = (stamp, meta)
        while len(_meta_cache) > _META_CACHE_SIZE:
            _meta_cache.pop(next(iter(_meta_cache)))
    if check:
        check_meta(meta, file)
    return meta


def read_report(file: Path) -> dict:
    """A run's ``report.json`` (empty lists when there is none); a damaged one is a :class:`RunError`."""
    if not os.path.lexists(file):
        return {"skipped": [], "epochs": []}
    try:
        report = json.loads(read_checked(file, max_bytes(REPORT, {})))
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is damaged ({e}); the run's report cannot be read") from None
    if not isinstance(report, dict) or not all(isinstance(report.get(k, []), list) for k in ("skipped", "epochs")) \
            or not all(isinstance(e, dict) for e in report.get("epochs", []) + report.get("skipped", [])):
        raise RunError(f"{file} is damaged: not a run report (an object with lists 'skipped' and 'epochs')")
    return report


def write_meta(file: Path, meta: dict) -> None:
    """Write ``meta.json`` and forget this process's parsed copy: a coarse file-system clock could give
    the next version the same stamp as the one cached."""
    with _meta_lock:
        _meta_cache.pop(str(file), None)
    atomic_write_json(file, meta)


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def check_meta(meta: object, file: Path) -> None:
    """Raise :class:`RunError` naming ``file`` unless ``meta`` has what every reader relies on, with
    field names that are plain names (a field becomes a file name under ``arrays/``)."""
    if not isinstance(meta, dict):
        raise RunError(f"{file} is damaged: it does not hold a JSON object")
    for key, kind in (("num_samples", int), ("epochs", int), ("finished_epochs", int), ("fields", list),
                      ("classes", list)):
        if key not in meta:
            raise RunError(f"{file} is damaged or not a run's meta.json: it lacks '{key}'")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise RunError(f"{file} is damaged: '{key}' is {meta[key]!r}, expected {kind.__name__}")
    if not 0 <= meta["finished_epochs"] <= max(meta["epochs"], 0) or meta["num_samples"] < 0:
        raise RunError(f"{file} is damaged: {meta['finished_epochs']} finished of {meta['epochs']} epochs, "
                       f"{meta['num_samples']} samples")
    for name in meta["fields"]:
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise RunError(f"{file} is damaged: array field {name!r} is not a plain name")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunError(f"{file} is damaged: 'format_version' is {version!r}, expected a positive integer")
    if version > FORMAT_VERSION:
        raise RunError(f"{file.parent} was written in run-folder format {version} {NEWER} "
                       f"({meta.get('versions', {}).get('csl_core', 'version unknown')}); this csl-clean reads "
                       f"format {FORMAT_VERSION} and older. Upgrade csl-clean (pip install -U csl-clean) to open it")


def newer_format(problems: list[str]) -> bool:
    """Whether :func:`~csl_core.run.store.run_problems` says the run comes from a newer csl-clean (not damaged)."""
    return any(NEWER in problem for problem in problems)


def check_array_file(file: Path, rows: int, min_columns: int) -> None:
    """Raise :class:`RunError` naming ``file`` unless it is a ``(rows, >= min_columns)`` .npy whose size on
    disk is what its header promises (a truncated file would read as zeros through a read-write map)."""
    try:
        shape, fortran_order, dtype, missing = npy_header(file)
    except FileNotFoundError as e:
        raise RunError(f"{file} is missing; the run is damaged") from e
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is damaged: its .npy header cannot be read ({e})") from e
    if fortran_order or len(shape) != 2 or shape[0] != rows or shape[1] < min_columns:
        raise RunError(f"{file} is damaged: shape {shape}, expected ({rows}, >= {min_columns})")
    if dtype.hasobject:
        raise RunError(f"{file} is damaged: it holds Python objects, which are never loaded")
    if missing:
        raise RunError(f"{file} is damaged: {abs(missing)} bytes {'fewer' if missing > 0 else 'more'} on disk than "
                       "its header promises (truncated or padded); restore it or train the run again")


def column_digest(values: np.ndarray) -> str:
    """The checksum of one epoch's column as stored (its bytes, in sample order)."""
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:32]


def array_checksum_problems(path: Path, meta: dict, rows_per_read: int = 1 << 16) -> list[str]:
    """Every finished epoch column of the run ``path`` whose bytes differ from the checksum recorded when it
    was written (``meta["checksums"]["arrays"]``): damage that keeps a file's size (zeroed columns) would
    otherwise pass and be trained on. Reads each array once, a slice of rows at a time."""
    recorded = meta.get("checksums", {}).get("arrays")
    if not isinstance(recorded, dict):
        return []  # a run written before checksums were recorded
    found = []
    finished = int(meta["finished_epochs"])
    for name in meta["fields"]:
        expected = recorded.get(name)
        if not isinstance(expected, list):
            continue
        columns = min(finished, len(expected))
        file = path / array_name(name)
        try:
            check_array_file(file, int(meta["num_samples"]), finished)
            rows = RowChunks(file, columns)
        except (RunError, ValueError):
            continue  # said by the size check
        digests = [hashlib.sha256() for _ in range(columns)]
        for start in range(0, len(rows), rows_per_read):
            block = rows[start:start + rows_per_read]
            for epoch, digest in enumerate(digests):
                digest.update(np.ascontiguousarray(block[:, epoch]).tobytes())
        bad = [epoch for epoch, digest in enumerate(digests) if digest.hexdigest()[:32] != expected[epoch]]
        if bad:
            found.append(f"{file} is damaged: the values of epoch(s) {', '.join(str(e + 1) for e in bad[:5])} differ "
                         "from the checksums recorded when they were written; restore it or train the run again")
    return found
