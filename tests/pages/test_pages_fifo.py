"""#29 (6): every file of the run-file table replaced by a FIFO (or a link) leaves every page drawing, with
one clear message where the file is needed: no page waits on the FIFO, none shows a traceback."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from csl_core.run.layout import ARRAYS, RUN_FILES

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
pytestmark = [pytest.mark.usefixtures("no_magic"), pytest.mark.slow]


def _file(run: Path, name: str) -> Path:
    if "<" not in name:
        return run / name.rstrip("/")
    if name.startswith(ARRAYS):
        return run / ARRAYS / "loss.npy"
    found = sorted(run.glob(name.split("<")[0] + "*" + Path(name).suffix))
    return found[0] if found else run / name.replace("<", "").replace(">", "")


@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_every_page_draws_with_a_run_file_replaced_by_a_fifo(demo_copy, open_app, name):
    file = _file(demo_copy, name)
    if file.is_dir():
        shutil.rmtree(file)
    file.unlink(missing_ok=True)
    file.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(file)
    at = open_app(run=str(demo_copy))
    for page in PAGES:
        at.switch_page(page).run(timeout=60)      # a page waiting on the FIFO times out here
        assert not at.exception, (page, [e.value for e in at.exception])
