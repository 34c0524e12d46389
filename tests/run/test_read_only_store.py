"""#29 (3): read-only is a property of the store: a RunStore opened read-only (or over a folder this process
cannot write) computes what it would keep and writes nothing: no scores parquet kept, no older one deleted."""
from __future__ import annotations

import hashlib
import os

import pytest

from csl_core.run.store import RunStore


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["argument", "folder"])
def test_a_read_only_store_keeps_nothing_and_deletes_nothing(tmp_path, copy_demo, monkeypatch, how):
    run = copy_demo(tmp_path / "run")
    for kept in [*run.glob("scores-*.parquet"), *run.glob("evaluation-*.json")]:
        kept.rename(kept.with_name(f"{kept.name.split('-')[0]}-{kept.name.split('-')[1]}-00000000{kept.suffix}"))
    (run / "class-loss-0004.npy").rename(run / "class-loss-0003.npy")
    before = _digest(run)
    if how == "folder":
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(run) in str(p))
                            else real_access(p, mode, **kw))
    store = RunStore(run, read_only=how == "argument")
    assert store.read_only
    scores = store.scores()
    store.class_mean_loss()
    store.evaluation("is_mislabeled", scores=scores)
    assert _digest(run) == before
