"""What the tests share that is not a fixture: the repository root, how long a wait may take, inputs made on
disk (``files``), hand-built run folders (``runs``), browser checks (``browser``), a folder with long class
names (``long_names``). No test module imports another; they import from here or take a conftest fixture."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# How long a test waits for a training or a page before calling it hung: long enough for a machine under
# any load (tests wait on events, not on the clock), short enough that a hang ends the run.
HANG_SECONDS = 1800
