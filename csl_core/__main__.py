"""``python -m csl_core``: the command line (see :mod:`csl_core.cli`)."""
from .cli import main

raise SystemExit(main())
