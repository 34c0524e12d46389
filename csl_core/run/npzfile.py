"""Reading a ``.npz`` of a run folder (``neighbours.npz``, ``fingerprints.npz``, a memorisation model) as its
table says it is: the file through :func:`~csl_core.run.files.open_checked` (a regular file of bounded size),
and each array only once its header (shape and type) is what the reader expects, so that a small compressed
file never unpacks into gigabytes, and an array of another shape or type (float indices) is never used."""
from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .errors import RunError
from .files import open_checked

#: ``fits(shape, dtype)``: whether an array of that header is what the reader expects.
Fits = Callable[[tuple, np.dtype], bool]


def read_npz(file: Path, max_bytes: int | None, fits: dict[str, Fits], *, optional: Iterable[str] = ()
             ) -> dict[str, np.ndarray]:
    """The arrays ``fits`` names from ``file`` (those in ``optional`` may be absent); raises
    :class:`RunError` naming the file and the array when one is missing, of another shape or type, or cut
    short, ``FileNotFoundError`` when the file is absent."""
    optional = set(optional)
    out: dict[str, np.ndarray] = {}
    with open_checked(file, max_bytes) as f:
        try:
            with zipfile.ZipFile(f) as archive:
                members = set(archive.namelist())
                for name, check in fits.items():
                    if f"{name}.npy" not in members:
                        if name in optional:
                            continue
                        raise RunError(f"{file} is damaged: it has no '{name}' array")
                    with archive.open(f"{name}.npy") as member:
                        out[name] = _read_member(member, file, name, check)
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
            raise RunError(f"{file} is damaged: not a .npz this tool wrote ({str(e)[:200]})") from None
    return out


def _read_member(member, file: Path, name: str, check: Fits) -> np.ndarray:
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(member)
    dtype = np.dtype(dtype)
    if dtype.hasobject or fortran_order or not check(tuple(shape), dtype):
        raise RunError(f"{file} is damaged: its '{name}' array is {dtype} {tuple(shape)}, not what this run "
                       "writes there")
    buffer = bytearray(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    view = memoryview(buffer)
    done = 0
    while done < len(buffer):
        got = member.readinto(view[done:])
        if not got:
            raise RunError(f"{file} is damaged: its '{name}' array is cut short")
        done += got
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)
