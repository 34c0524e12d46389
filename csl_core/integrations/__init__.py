"""Integrations layer: glue for other people's training frameworks, each an optional extra imported only when used.

- :mod:`csl_core.integrations.lightning`: a PyTorch Lightning ``Callback`` (``pip install 'csl-clean[lightning]'``).
- :mod:`csl_core.integrations.huggingface`: a ``transformers.Trainer`` callback and loss mixin
  (``pip install 'csl-clean[hf]'``).

Both feed a :class:`~csl_core.engine.tracker.CSLTracker` from the training step and write a run folder
with :class:`~csl_core.run.writer.RunWriter`, epoch by epoch.
"""
