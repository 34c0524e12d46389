"""An export interrupted while it writes (the disk full, the process stopped) leaves the previous export whole
and no half-written file behind: the new file only ever appears complete."""
from __future__ import annotations

from pathlib import Path

import pytest

from csl_core.run.decisions import DecisionLog
from csl_core.run.export import export_run


def test_an_export_interrupted_mid_write_leaves_the_previous_one_whole(tmp_path, make_run, monkeypatch):
    store = make_run(tmp_path / "run", n=40)
    first = export_run(store.path)
    before = first.csv_path.read_bytes()
    DecisionLog(store.path).record(list(range(10)), "drop")       # the next export differs

    real_write = Path.write_bytes

    def half_then_stop(self, data):
        real_write(self, data[: len(data) // 2])                    # half the new file is on the disk...
        raise KeyboardInterrupt                                     # ...when the export is stopped

    monkeypatch.setattr(Path, "write_bytes", half_then_stop)
    with pytest.raises(KeyboardInterrupt):
        export_run(store.path, include_dropped=False)
    monkeypatch.undo()
    assert first.csv_path.read_bytes() == before
    assert sorted(p.name for p in first.csv_path.parent.iterdir()) == [first.csv_path.name]   # no temporary file
    again = export_run(store.path, include_dropped=False)          # and the next export completes
    assert again.csv_path.read_bytes() != before and len(again.csv_path.read_bytes().splitlines()) == 1 + 30
