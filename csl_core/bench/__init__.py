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

from .curvature import input_loss_curvature
from .planning import BenchConfig, Setting, Task, bench_command, default_duplicate_pairs, plan, training_size
from .report import render_markdown, render_roc_html, summarise
from .runner import Benchmark, run_benchmark
from .surgery import load_trained_model, relabel, select_rows

__all__ = ["BenchConfig", "Benchmark", "Setting", "Task", "bench_command", "default_duplicate_pairs",
           "input_loss_curvature", "load_trained_model", "plan", "relabel", "render_markdown", "render_roc_html",
           "run_benchmark", "select_rows", "summarise", "training_size"]
