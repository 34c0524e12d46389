"""The one damage check every reader shares (the dashboard's pages, ``info``): whether a run folder's files
agree with each other, beyond each file being whole. A crafted or damaged run (classes fewer than the
labels, a probabilities file of another shape, ``report.json`` a list, a truncated decision log) is said
here, file by file, so that a page shows "damaged" instead of failing halfway. Cheap: headers and the
sample table only, and :func:`cached_problems` reruns it only when one of the files changes."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import RunError
from .files import read_checked, sha256_file
from .layout import ARRAYS, DECISIONS, EMBEDDINGS, IMAGES, META, PROBABILITIES, REPORT, SAMPLES, array_name, max_bytes
from .logfile import log_problem
from .schema import npy_header
from .tables import read_sample_table

#: ``report.json`` past this size is not read (a run's report lists skipped files: megabytes at most).
MAX_REPORT_BYTES = max_bytes(REPORT, {})
_SAMPLE_COLUMNS = ("index", "sample_id", "label", "class_name", "image_index")


def consistency_problems(path: Path, meta: dict) -> list[str]:
    """Every disagreement between the run's files, one sentence each naming the file (empty: consistent)."""
    found = _meta_problems(path / META, meta)
    if found:
        return found
    n, classes = int(meta["num_samples"]), meta["classes"]
    found += _table_problems(path / SAMPLES, n, len(classes), path / IMAGES) or samples_changed(path / SAMPLES, meta)
    found += _report_problems(path / REPORT)
    for name, check in ((PROBABILITIES, lambda s, d: len(s) == 2 and s == (n, len(classes)) and d.kind == "f"),
                        (EMBEDDINGS, lambda s, d: len(s) == 2 and s[0] == n and d.kind == "f"),
                        (IMAGES, lambda s, d: len(s) == 4 and s[0] == n and s[3] in (1, 3) and d == np.uint8)):
        found += _npy_problems(path / name, check)
    for field in meta["fields"]:
        file = path / array_name(field)
        kinds = "biu" if field == "correct" else "f"
        found += _npy_problems(file, lambda s, d, kinds=kinds: d.kind in kinds, missing_ok=False, what="its values")
    problem = log_problem(path)
    if problem:
        found.append(problem)
    return found


def _meta_problems(file: Path, meta: dict) -> list[str]:
    classes = meta.get("classes")
    if len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        return [f"{file} is damaged: 'classes' must name at least two classes, as text"]
    bad = [key for key, kind in (("source", str), ("model", str), ("name", str), ("config", dict),
                                 ("checksums", dict), ("normalisation", dict), ("image_shape", list))
           if key in meta and meta[key] is not None and not isinstance(meta[key], kind)]
    shape = meta.get("image_shape")
    if isinstance(shape, list) and (len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape)):
        bad.append("image_shape")
    if bad:
        return [f"{file} is damaged: {', '.join(repr(b) for b in bad)} not of the kind a run records"]
    return []


def _table_problems(file: Path, n: int, k: int, images: Path) -> list[str]:
    try:
        table = read_sample_table(file, max_bytes(SAMPLES, {"num_samples": n}))
    except RunError as e:
        return [str(e)]
    except (OSError, ValueError) as e:
        return [f"{file} cannot be read as a sample table ({str(e)[:200]}); the run is damaged"]
    missing = [c for c in _SAMPLE_COLUMNS if c not in table.columns]
    if missing:
        return [f"{file} is damaged: it lacks the column(s) {missing}"]
    if len(table) != n:
        return [f"{file} has {len(table)} rows but meta.json says {n} samples; the run is damaged"]
    for column, top in (("label", k), ("true_label", k), ("suggested_label", k), ("image_index", None)):
        if column not in table.columns:
            continue
        values = table[column]
        if values.dtype.kind not in "iu":
            return [f"{file} is damaged: column '{column}' holds {values.dtype} values, not integers"]
        if len(values) and (values.min() < 0 or (top is not None and values.max() >= top)):
            limit = f"0..{top - 1} (meta.json names {top} classes)" if top is not None else "no negative value"
            return [f"{file} is damaged: '{column}' runs {values.min()}..{values.max()}, expected {limit}"]
    if not np.array_equal(table["index"].to_numpy(), np.arange(n)):
        return [f"{file} is damaged: its 'index' column does not number the samples 0..{n - 1}"]
    return []


def samples_changed(file: Path, meta: dict) -> list[str]:
    """``samples.csv`` against the size and SHA-256 recorded when the run was made: a table edited since (a
    label changed) no longer names the samples whose losses were recorded, nor the labels its kept scores hold."""
    recorded = meta.get("checksums", {}).get(SAMPLES) if isinstance(meta.get("checksums"), dict) else None
    if not isinstance(recorded, dict):
        return []
    if os.stat(file).st_size != recorded.get("size") or sha256_file(file) != recorded.get("sha256"):
        return [f"{file} was changed after the run was made (it no longer matches the checksum in meta.json), so "
                "its rows may no longer be the samples whose losses were recorded, nor the labels the kept scores "
                "hold. Restore it, or import the run again from its arrays"]
    return []


def _report_problems(file: Path) -> list[str]:
    if not os.path.lexists(file):
        return []
    try:
        report = json.loads(read_checked(file, MAX_REPORT_BYTES))
    except RunError as e:
        return [str(e)]
    except (OSError, ValueError) as e:
        return [f"{file} is damaged ({e})"]
    if not isinstance(report, dict) or not all(isinstance(report.get(k, []), list) for k in ("skipped", "epochs")) \
            or not all(isinstance(e, dict) for e in report.get("epochs", []) + report.get("skipped", [])):
        return [f"{file} is damaged: not a run report (an object with lists 'skipped' and 'epochs')"]
    return []


def _npy_problems(file: Path, fits: Callable, *, missing_ok: bool = True, what: str = "its shape") -> list[str]:
    try:
        shape, fortran, dtype, missing = npy_header(file)
    except FileNotFoundError:
        return [] if missing_ok else [f"{file} is missing; the run is damaged"]
    except RunError as e:
        return [str(e)]
    except (OSError, ValueError) as e:
        return [f"{file} is damaged: its .npy header cannot be read ({e})"]
    if dtype.hasobject or fortran or not fits(shape, dtype):
        return [f"{file} is damaged: {what} ({dtype} {shape}) do not fit this run"]
    if missing:
        return [f"{file} is damaged: its size on disk is not what its header promises (truncated or padded)"]
    return []


_cache: dict[str, tuple[tuple, list[str]]] = {}
_cache_lock = threading.Lock()
_WATCHED = (META, SAMPLES, REPORT, PROBABILITIES, EMBEDDINGS, IMAGES, DECISIONS, ARRAYS)


def cached_problems(path: Path, compute: Callable[[], list[str]]) -> list[str]:
    """``compute()`` for the run ``path``, computed again only when one of its files changes (a page asks
    for every listed run on every rerun)."""
    stamp = []
    for name in _WATCHED:
        try:
            st = os.stat(path / name)
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamp.append(None)
    try:
        stamp += [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted((path / ARRAYS).glob("*.npy"))]
    except OSError:
        pass
    key = str(path)
    with _cache_lock:
        kept = _cache.get(key)
    if kept is not None and kept[0] == tuple(stamp):
        return list(kept[1])
    try:
        found = compute()
    except RunError as e:
        found = [str(e)]
    with _cache_lock:
        _cache[key] = (tuple(stamp), found)
        while len(_cache) > 256:
            _cache.pop(next(iter(_cache)))
    return list(found)
