"""#29 (8): ``duplicates`` on a run folder this process cannot write searches and skips its cache, instead of
failing on it."""
from __future__ import annotations

import os

from csl_core.cli import main


def test_duplicates_on_a_folder_that_cannot_be_written_searches_and_keeps_nothing(tmp_path, copy_demo, monkeypatch,
                                                                                   capsys):
    run = copy_demo(tmp_path / "run")
    for kept in ("neighbours.npz", "fingerprints.npz"):
        (run / kept).unlink(missing_ok=True)
    before = sorted(p.name for p in run.iterdir())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(run) in str(p))
                        else real_access(p, mode, **kw))          # as a folder of another user (tests run as root)
    assert main(["duplicates", str(run), "--top", "2"]) == 0
    assert sorted(p.name for p in run.iterdir()) == before
