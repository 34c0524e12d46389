"""#29 (8): a run written by a newer csl-clean is refused as such, never called damaged."""
from __future__ import annotations

import json

import pytest

from csl_core.run.layout import FORMAT_VERSION

pytestmark = pytest.mark.usefixtures("no_magic")


def test_a_run_from_a_newer_csl_clean_is_said_as_such_not_as_damaged(demo_copy, open_app):
    meta = json.loads((demo_copy / "meta.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (demo_copy / "meta.json").write_text(json.dumps(meta))
    at = open_app(run=str(demo_copy))
    at.switch_page("pages/galleries.py").run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert "made by a newer csl-clean" in shown and "damaged" not in shown
