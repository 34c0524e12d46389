"""#29 (8): a directional control in a class name (U+202E reverses what follows) never reaches a table view:
Class pairs, Review queue and Export show class names isolated, the control removed."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("no_magic")
CONTROLS = ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067")


def test_table_views_show_no_directional_control(demo_copy, open_app):
    meta = json.loads((demo_copy / "meta.json").read_text())
    meta["classes"] = [f"\u202e{name}-gnp" for name in meta["classes"]]     # a run made before, or crafted
    (demo_copy / "meta.json").write_text(json.dumps(meta))
    at = open_app(run=str(demo_copy))
    seen = 0
    for page in ("pages/pairs.py", "pages/review.py", "pages/export.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        for table in [*at.dataframe, *at.get("arrow_data_frame")]:
            frame = table.value
            cells = [str(v) for column in frame.columns for v in frame[column].tolist()]
            cells += [str(c) for c in frame.columns] + [str(i) for i in frame.index]
            seen += len(cells)
            assert not [c for c in cells if any(control in c for control in CONTROLS)], page
    assert seen
