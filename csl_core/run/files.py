"""Atomic files and the lock file: how every file of a run folder (and an export) reaches the disk.

A file is written to a temporary name beside its target and renamed, so a reader never sees half a file."""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temporary file in ``path``'s folder (same file system, so ``os.replace`` is atomic), with
    the permissions an ordinary new file gets rather than mkstemp's owner-only ones."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


@contextmanager
def atomic_file(path: Path, *, suffix: str = ".tmp", durable: bool = True) -> Iterator[Path]:
    """The one way a file reaches the disk: yields a temporary path beside ``path`` for the block to
    write, then renames it onto ``path``; if the block raises, the temporary file is removed and
    ``path`` is left as it was. ``durable`` flushes the data to the disk before the rename (skipped
    for preallocated arrays that are filled in place afterwards). ``suffix`` keeps writers that add
    their own extension (``np.savez`` adds ``.npz``) writing to the yielded name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path, suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON (numpy numbers and arrays, paths as plain values), atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode())


def atomic_write_csv(path: Path, frame: pd.DataFrame, **kwargs) -> None:
    """Write ``frame`` as CSV without its index (``kwargs`` go to ``DataFrame.to_csv``), atomically."""
    atomic_write_bytes(path, frame.to_csv(index=False, **kwargs).encode())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as a ``.npy`` file, atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def lock_file(file: Path, **fields):
    """Hold ``file`` as a lock for the ``with`` block: created exclusively, holding this process's pid,
    host and ``fields``, and removed at the end. A lock left by a dead process on this host is taken
    over. Yields ``None`` when the lock is held; when a live process holds it, yields that process's
    record (``{}`` if unreadable) and holds nothing."""
    file = Path(file)
    token = {"pid": os.getpid(), "host": socket.gethostname(), **fields, "since": time.time()}
    holder: dict | None = {}
    for _ in range(2):
        try:
            fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _read_lock(file)
            if holder and _is_stale(holder):
                file.unlink(missing_ok=True)
                continue
            break
        with os.fdopen(fd, "w") as f:
            json.dump(token, f)
        try:
            yield None
        finally:
            file.unlink(missing_ok=True)
        return
    yield holder or {}


def _read_lock(file: Path) -> dict | None:
    try:
        with open(file) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def _allocate(path: Path, rows: int, cols: int, dtype, *, keep: np.ndarray | None = None) -> None:
    """Create a ``(rows, cols)`` .npy filled with NaN (or 0), written under a temporary name first;
    ``keep`` (an array of ``rows`` rows and at most ``cols`` columns) fills its first columns."""
    with atomic_file(path, durable=False) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, cols))
        if np.issubdtype(np.dtype(dtype), np.floating):
            mm[:] = np.nan
        if keep is not None:
            mm[:, : keep.shape[1]] = keep
        mm.flush()
        del mm
