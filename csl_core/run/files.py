"""Atomic files and the lock file: how every file of a run folder (and an export) reaches the disk.

A file is written to a temporary name beside its target and renamed, so a reader never sees half a file."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RunError

_UMASK = os.umask(0)
os.umask(_UMASK)
#: Opened without following a symbolic link at the last component (0 where the platform has no such flag).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def open_checked(path: Path, max_bytes: int | None = None):
    """The one way a file of a run folder is opened for reading: a binary file object, once it is known to
    be a regular file (never through a symbolic link; a FIFO, which would block the reader forever, or a
    device is refused) of at most ``max_bytes`` bytes (a file larger than any run writes is never read). The
    file is opened without following a link and without blocking, and checked on the open descriptor.
    Raises :class:`RunError` naming the file, ``FileNotFoundError`` when it is absent."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        if path.is_symlink():
            raise RunError(f"{path} is a symbolic link; a run's files are read only where they are, never "
                           "through a link. Replace the link with the file") from None
        raise RunError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
            raise RunError(f"{path} is {kind}, not a file this tool wrote; it is not read. Remove it")
        if max_bytes is not None and info.st_size > max_bytes:
            raise RunError(f"{path} is {info.st_size:,} bytes, more than this run ever writes there "
                           f"({max_bytes:,} at most); it is not read. Remove it, or restore the run's own file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_file(path: Path, max_bytes: int | None = None) -> None:
    """Raise as :func:`open_checked` does, for readers that take a path (a memory map, SQLite, torch)."""
    open_checked(path, max_bytes).close()


def read_checked(path: Path, max_bytes: int | None) -> bytes:
    """The bytes of ``path`` read through :func:`open_checked`."""
    with open_checked(path, max_bytes) as f:
        return f.read()


def refuse_link(path: Path, what: str = "") -> None:
    """Raise :class:`RunError` when ``path`` is a symbolic link: a file or folder this tool writes in a run
    folder or an export is never reached through a link (a shared or downloaded folder may plant one at a
    user's file)."""
    if Path(path).is_symlink():
        raise RunError(f"{path} is a symbolic link{' ' + what if what else ''}; this tool never writes through "
                       "a link (it could overwrite the file it points to). Remove the link, or use another folder")


def real_folder(folder: Path) -> Path:
    """``folder``, created if missing, refused if it is a symbolic link (see :func:`refuse_link`)."""
    folder = Path(folder)
    refuse_link(folder)
    folder.mkdir(parents=True, exist_ok=True)
    refuse_link(folder)
    return folder


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` with a :class:`RunError` naming it."""
    try:
        return os.open(path, flags | O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK) or Path(path).is_symlink():
            refuse_link(path)
        raise


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temporary file in ``path``'s folder (same file system, so ``os.replace`` is atomic), with
    the permissions an ordinary new file gets rather than mkstemp's owner-only ones."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)   # see temp_glob
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def temp_glob(name: str) -> str:
    """The glob of the temporary files :func:`temp_file_beside` (so :func:`atomic_file`) makes for a file called
    ``name`` (itself a glob or not): ``.loss.npy.k3j9x_.tmp``, ``.fingerprints.npz.a8b2.tmp.npz``."""
    return f".{name}.*.tmp*"


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
    """Write ``frame`` as CSV without its index (``kwargs`` go to ``DataFrame.to_csv``), atomically; text
    cells that a spreadsheet would run as a formula are neutralised (:func:`csv_safe`)."""
    atomic_write_bytes(path, csv_safe(frame).to_csv(index=False, **kwargs).encode())


_FORMULA_START = tuple("=+-@\t\r")


def _neutralise(value):
    if isinstance(value, str) and value and (
            value.startswith(_FORMULA_START) or (value[0] == "'" and value[1:2] in (*_FORMULA_START, "'"))):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that starts like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage
    return) prefixed with ``'``, as OWASP advises against CSV injection; a cell already starting with ``'``
    and one of those gets one more, so that :func:`csv_unsafe` gives back exactly what was written."""
    text = [c for c in frame.columns if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype)
            or isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not text:
        return frame
    return frame.assign(**{c: frame[c].astype(object).map(_neutralise) for c in text})


def csv_unsafe(values: pd.Series) -> pd.Series:
    """The text cells :func:`csv_safe` wrote, as they were (one leading ``'`` before a formula start removed)."""
    def restore(value):
        if isinstance(value, str) and value[:1] == "'" and value[1:2] in (*_FORMULA_START, "'") and len(value) > 1:
            return value[1:]
        return value
    return values.map(restore)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as a ``.npy`` file, atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
    """Hold ``file`` as a lock for the ``with`` block.

    The lock is ``fcntl.flock`` on the file, so the kernel releases it when the holding process dies
    (kill -9 included) and two processes can never both hold it. The file also keeps a readable record
    of its holder (pid, host, ``fields``, since) for messages, and is removed at the end. Yields ``None``
    while the lock is held; when another process (or another open file in this one) holds it, yields
    that holder's record (``{}`` if unreadable) and holds nothing."""
    file = Path(file)
    token = {"pid": os.getpid(), "host": socket.gethostname(), **fields, "since": time.time()}
    fd = _acquire(file)
    if fd is None:
        yield _read_lock(file) or {}
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(token).encode(), 0)
        yield None
    finally:
        # Unlinked while still held, so that whoever opens the path next makes a fresh file (see _acquire).
        try:
            if os.fstat(fd).st_ino == os.stat(file).st_ino:
                file.unlink()
        except OSError:
            pass
        os.close(fd)


def _flock(fd: int, *, shared: bool = False) -> bool:
    """Try to take the lock on ``fd`` without waiting: ``True`` when taken, ``False`` when another holds it.
    ``fcntl.flock`` where there is one (imported here, so that ``csl_core.run`` imports without it, on
    Windows), else ``msvcrt.locking`` on the file's first byte."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try:
        import msvcrt
    except ImportError:
        raise RunError("this platform has neither fcntl nor msvcrt: a run folder cannot be locked here") from None
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _acquire(file: Path) -> int | None:
    """An open descriptor of ``file`` holding an exclusive flock, or ``None`` when another holds it.

    A holder unlinks the file before it lets go, so a descriptor opened before that unlink may lock a
    file that is no longer at the path: the lock only counts if the path still names the locked file."""
    for _ in range(100):
        # Never through a link: a planted ``lock -> ~/file`` would be truncated and overwritten below.
        fd = open_nofollow(file, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o666 & ~_UMASK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RunError(f"{file} is not a regular file (a FIFO or a device in the lock's place); remove it")
            if not _flock(fd):
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(file).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the file was replaced under us: try again on the one now at the path
    raise OSError(f"{file}: could not take the lock (the lock file keeps being replaced)")


def is_lock_held(file: Path) -> bool:
    """Whether some process holds the flock on ``file`` now (a leftover file without a holder is not held)."""
    try:
        fd = os.open(file, os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return not _flock(fd, shared=True)
    finally:
        os.close(fd)


def _read_lock(file: Path) -> dict | None:
    try:
        with open_checked(file, 1 << 16) as f:
            record = json.loads(f.read(1 << 16))
    except (OSError, ValueError, RunError):
        return None
    return record if isinstance(record, dict) else None


def allocate_array(path: Path, rows: int, cols: int, dtype, *, keep: np.ndarray | None = None) -> None:
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


def read_npy_header(f) -> tuple[tuple, bool, np.dtype, int]:
    """The one ``.npy`` header reader: ``(shape, fortran_order, dtype, offset of the data)`` of the open binary
    file ``f`` (read from its start; nothing is loaded or unpickled). Raises ValueError on a bad header."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(f)
    return tuple(shape), fortran_order, np.dtype(dtype), f.tell()


@contextmanager
def array_in_place(file: Path) -> Iterator[np.ndarray]:
    """A read-write memory map of the ``.npy`` ``file``, opened without following a link (an array of a
    run folder is written in place, column by column; never into a file a link points at)."""
    fd = open_nofollow(file, os.O_RDWR)
    with os.fdopen(fd, "r+b") as f:
        shape, fortran_order, dtype, offset = read_npy_header(f)
        mm = np.memmap(f, dtype=dtype, mode="r+", offset=offset, shape=shape, order="F" if fortran_order else "C")
        try:
            yield mm
            mm.flush()
        finally:
            del mm
