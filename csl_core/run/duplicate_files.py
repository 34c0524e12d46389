"""Which copy of a duplicate group to keep, from the run's files: their resolution and size (read for the
grouped samples only), by the pure :func:`~csl_core.analysis.duplicate_choice.keep_member`."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..analysis.duplicate_choice import DEFAULT_KEEP, keep_member
from ..analysis.duplicates import DuplicateReport


def file_facts(samples: pd.DataFrame, rows) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, bytes)`` of each sample's file, ``(N,)`` float, for ``rows`` only (NaN elsewhere, and where
    the run names no file or it cannot be read): width x height from the image's header, the file's size."""
    n = len(samples)
    pixels, sizes = np.full(n, np.nan), np.full(n, np.nan)
    if "path" not in samples.columns:
        return pixels, sizes
    from PIL import Image

    paths = samples["path"].to_numpy()
    for row in np.asarray(list(rows), dtype=np.int64):
        try:
            sizes[row] = os.stat(str(paths[row])).st_size
            with Image.open(str(paths[row])) as image:  # the header only
                pixels[row] = image.width * image.height
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return pixels, sizes


def kept_members(report: DuplicateReport, samples: pd.DataFrame, policy: str = DEFAULT_KEEP) -> dict[int, int]:
    """Each group's member to keep under ``policy`` (:data:`~csl_core.analysis.duplicate_choice.KEEP_POLICIES`):
    group -> sample index. Files are looked at only for the grouped samples, and only when the policy needs them."""
    members = [m for ms in report.groups["members"] for m in ms]
    pixels = sizes = None
    if policy in ("highest-resolution", "largest-file"):
        pixels, sizes = file_facts(samples, members)
    csl = report.samples["csl"].to_numpy()
    return {int(g): keep_member(ms, policy, csl=csl, pixels=pixels, file_bytes=sizes)
            for g, ms in zip(report.groups["group"], report.groups["members"])}
