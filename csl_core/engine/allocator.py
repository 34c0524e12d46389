"""Keep glibc's malloc from handing memory back to the kernel between training steps on CPU.

PyTorch's CPU tensors come from ``malloc``. A training step frees and re-allocates the same
few-megabyte activation buffers every batch, and glibc's defaults either serve them with fresh
``mmap`` calls or trim the heap after each free, so every step pays page faults on memory it just
released. That shows as system time (a third of an epoch's CPU time on small CNNs here) and as noisy
epoch times. :func:`keep_freed_memory` raises the thresholds once for the process: memory stays
mapped up to the training step's peak, and re-allocating it is free.

It is what the glibc documentation's ``mallopt`` tunables are for; the same effect comes from the
environment variables ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` and
``MALLOC_TOP_PAD_``. Set ``CSL_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# glibc caps the mmap threshold at half its heap size (32 MiB on 64-bit machines).
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30
TOP_PAD = 64 * 2**20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for training loops, once per process. Returns whether it is in effect:
    ``False`` off glibc (macOS, Windows, musl) or with ``CSL_KEEP_FREED_MEMORY=0``."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("CSL_KEEP_FREED_MEMORY", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only; musl's mallopt does nothing
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _applied
