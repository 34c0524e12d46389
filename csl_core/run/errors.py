"""The errors of a run folder that a person can act on."""
from __future__ import annotations


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (missing, locked, incompatible)."""


class RunLockedError(RunError):
    """The run folder is being trained by another live process."""
