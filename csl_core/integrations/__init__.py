"""Integrations layer: glue for other people's training frameworks, each an optional extra imported only when used.

- :mod:`csl_core.integrations.lightning`: a PyTorch Lightning ``Callback`` (``pip install 'csl-clean[lightning]'``).
- :mod:`csl_core.integrations.huggingface`: a ``transformers.Trainer`` callback and loss mixin
  (``pip install 'csl-clean[hf]'``).

Both feed a :class:`~csl_core.engine.tracker.CSLTracker` from the training step and write a run folder
with :class:`~csl_core.run.writer.RunWriter`, epoch by epoch.
"""
from __future__ import annotations

from ..errors import InputError


def sample_table(who: str, *, labels, paths, images, samples) -> tuple[dict, int]:
    """The training set's description a callback hands to :class:`~csl_core.run.writer.RunWriter` (labels, or
    a sample table; file paths or a uint8 image array), and its number of samples. ``who`` names the callback
    in the error when neither labels nor a sample table are given."""
    if samples is None and labels is None:
        raise InputError(f"{who} needs the labels (or a sample table) of the training set")
    table = {"labels": labels, "paths": paths, "images": images, "samples": samples}
    return table, len(samples) if samples is not None else len(labels)
