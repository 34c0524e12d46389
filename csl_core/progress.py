"""Progress bars for long work on the command line (tqdm, written to stderr)."""
from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 disable: bool | None = None, **kwargs):
    """A tqdm bar that stays quiet when stderr is not a terminal unless asked otherwise."""
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)
