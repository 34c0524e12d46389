"""Errors layer: the one base of every error csl_core raises for a person to act on.

``except CSLError`` catches them all; each also subclasses the builtin it has always been (``InputError``
and ``DataError`` are ``ValueError``s, ``RunError`` a ``RuntimeError``, ``ImageUnavailable`` a ``LookupError``), so an
``except ValueError`` written before keeps working.
"""
from __future__ import annotations


class CSLError(Exception):
    """Something a person must fix or know: the message says what, where, and what to do."""


class InputError(CSLError, ValueError):
    """A value a person gave that cannot be used: an option, a setting, a file to import, a decision asked for."""


class DataError(CSLError, ValueError):
    """Input data a person must fix: the message says what is wrong, where, and what to do."""


class RunError(CSLError, RuntimeError):
    """A run folder that cannot be used as asked (missing, locked, incompatible)."""


class RunLockedError(RunError):
    """The run folder is being trained by another live process."""


class ImageUnavailable(CSLError, LookupError):
    """A run's image cannot be shown: no source knows the run, or its source changed."""


class DecisionsChanged(RunError):
    """A bulk decision computed from a state of the decision log that has changed since (another tab
    decided or undid on its samples): refused, so that it is looked at again before it is applied."""


#: What the command line and the dashboard say under the traceback of an error that is not a CSLError: a bug.
REPORT_BUG = ("This is a bug in csl-clean, not something you did: please report it to its maintainers with the "
              "traceback above, the command or page, and `pip show csl-clean`'s version.")
