"""Benchmark layer: the paper's mislabeled and duplicate protocols, CSL against every baseline.

Protocols (see ``docs/protocols.md`` of the project):

- *noise p*: ``floor(p N)`` seeded training labels flipped to a different class; positives = flipped.
- *duplicates K*: ``K`` disjoint pairs ``(a, b)``; ``a`` shows ``b``'s image with a different label;
  positives = both members.

For every (setting, seed) one training run gives CSL (training pass and eval pass) and every
training-dynamics baseline; confident learning (cleanlab) gets K-fold out-of-sample probabilities
from the same model, schedule and epochs. Nothing is tuned per method: every training uses the
engine's default :class:`~csl_core.config.TrainConfig`.

The plan is split into tasks, each saved as ``cells/<task>.json`` the moment it finishes, so that
re-running the same command resumes where it stopped. Run folders live under ``runs/`` of the
output folder; ``results.json``, ``results.md`` and ``roc.html`` are rewritten at the end.
"""
from __future__ import annotations

import importlib

# The names below load on first use, so that the command line's parser (which reads BenchConfig) does not
# import torch.
_EXPORTS = {
    "input_loss_curvature": "curvature", "BenchConfig": "planning", "Setting": "planning", "Task": "planning",
    "bench_command": "planning", "default_duplicate_pairs": "planning", "plan": "planning",
    "training_size": "planning", "render_markdown": "report", "render_roc_html": "report", "summarise": "report",
    "Benchmark": "runner", "run_benchmark": "runner", "load_trained_model": "surgery", "relabel": "surgery",
    "select_rows": "surgery",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
