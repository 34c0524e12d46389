"""The job registry: one training per run folder, one at a time from the New run form, a failed job listed
until it is discarded."""
from __future__ import annotations

import pytest

from csl_core.engine.jobs import Job, JobRegistry
from csl_core.engine.train import TrainConfig
from csl_core.run.store import RunError
from tests.support import HANG_SECONDS
from tests.support.engine import Watched


def small(**changes) -> TrainConfig:
    return TrainConfig(**{"data": "demo", "epochs": 30, "device": "cpu", "compute_embeddings": False, **changes})


def test_a_second_start_is_refused_while_a_job_trains(tmp_path):
    registry = JobRegistry()
    first = registry.start(Watched(small(), tmp_path / "a"))
    try:
        assert first.second_batch.wait(timeout=HANG_SECONDS), first.status()
        with pytest.raises(RunError, match="already training"):
            registry.start(Job(small(), tmp_path / "a"))                 # the same folder
        with pytest.raises(RunError, match="is training; stop it first"):
            registry.start(Job(small(), tmp_path / "b"), alone=True)     # the New run form
        registry.discard(tmp_path / "a")                                  # active: kept
        assert registry.get(tmp_path / "a") is first and registry.active() == [first]
    finally:
        first.stop()
        first.wait(timeout=HANG_SECONDS)
    assert registry.active() == [] and not (tmp_path / "b").exists()


def test_a_failed_job_stays_listed_until_discarded(tmp_path):
    registry = JobRegistry()
    job = registry.start(Job(small(data=f"imagefolder:{tmp_path / 'nowhere'}"), tmp_path / "run"))
    status = job.wait(timeout=HANG_SECONDS)
    assert status.state == "failed" and "does not exist" in status.error
    assert registry.get(tmp_path / "run") is job and registry.all() == [job]
    registry.discard(str(tmp_path / "run"))
    assert registry.get(tmp_path / "run") is None and registry.all() == []
