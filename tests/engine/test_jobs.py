"""The background job: start, progress, stop, failure with its traceback."""
from __future__ import annotations

import time

import pytest

from csl_core.engine.jobs import Job
from csl_core.engine.train import TrainConfig
from csl_core.run.store import RunStore
from tests.support import HANG_SECONDS
from tests.support.engine import Watched


def small(**changes) -> TrainConfig:
    return TrainConfig(**{"data": "demo", "epochs": 2, "subset": 300, "device": "cpu",
                          "compute_embeddings": False, **changes})


def test_a_job_trains_in_the_background_and_reports_its_progress(tmp_path):
    job = Job(small(), tmp_path / "run")
    assert job.status().state == "created"
    job.start()
    seen = set()
    while job.status().active:
        seen.add(job.status().state)
        time.sleep(0.02)
    status = job.wait(timeout=120)
    assert status.state == "finished", status.error
    assert seen <= {"preparing", "running"}
    assert status.epoch == 2 and len(status.losses) == 2 and len(status.accuracies) == 2
    assert len(status.seconds_per_epoch) == 2 and status.fraction == 1.0
    assert status.test_accuracy is not None and status.eta_seconds is None
    assert status.to_dict()["active"] is False
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


def test_status_is_a_copy_the_caller_cannot_corrupt(tmp_path):
    job = Job(small(epochs=1), tmp_path / "run").start()
    job.wait(timeout=120)
    job.status().losses.append(99.0)
    assert len(job.status().losses) == 1


def test_stop_ends_after_the_current_batch_and_leaves_the_run_resumable(tmp_path):
    job = Watched(small(epochs=30, subset=None), tmp_path / "run").start()
    assert job.second_batch.wait(timeout=HANG_SECONDS), job.status()   # catches a hang, not a slow machine
    running = job.status()
    assert running.state == "running" and running.eta_seconds is not None
    job.stop()
    assert job.status().state in ("stopping", "stopped")
    status = job.wait(timeout=120)
    assert status.state == "stopped" and status.epoch < 30
    store = RunStore(tmp_path / "run")
    assert store.finished_epochs == status.epoch and not store.meta.get("completed")
    assert not store.is_locked()


def test_a_failure_is_reported_with_its_traceback(tmp_path):
    job = Job(small(data=f"imagefolder:{tmp_path / 'missing'}"), tmp_path / "run").start()
    status = job.wait(timeout=60)
    assert status.state == "failed" and not status.active
    assert status.error.startswith("DataError:") and "missing" in status.error
    assert "Traceback" in status.traceback and "load_imagefolder" in status.traceback


def test_a_second_job_on_a_locked_run_fails_cleanly(tmp_path):
    first = Job(small(epochs=1), tmp_path / "run").start()
    first.wait(timeout=120)
    store = RunStore(tmp_path / "run")
    with store.lock():
        second = Job(small(epochs=1), tmp_path / "run", resume=True).start()
        status = second.wait(timeout=60)
    assert status.state == "failed" and status.error.startswith("RunLockedError")
