"""The errors of a run folder that a person can act on (defined with the others in :mod:`csl_core.errors`)."""
from __future__ import annotations

from ..errors import ImageUnavailable, RunError, RunLockedError

__all__ = ["ImageUnavailable", "RunError", "RunLockedError"]
