"""Training in a background thread, with a thread-safe status that any UI can poll.

The job never calls a UI; the dashboard holds it (``st.cache_resource``) and reads :meth:`Job.status`.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..config import TrainConfig
from ..run.store import RunError


@dataclass
class JobStatus:
    """A snapshot of a job, safe to read from any thread. ``state`` is one of created, preparing,
    running, stopping (then stopped), finished, failed (``error`` and ``traceback`` say why)."""

    state: str = "created"
    run_dir: str = ""
    epoch: int = 0                 # epochs finished
    epochs: int = 0
    batch: int = 0                 # batches done in the epoch in flight
    batches: int = 0
    losses: list[float] = field(default_factory=list)       # mean training loss per finished epoch
    accuracies: list[float] = field(default_factory=list)   # training accuracy per finished epoch
    seconds_per_epoch: list[float] = field(default_factory=list)
    eta_seconds: float | None = None
    test_accuracy: float | None = None
    error: str | None = None
    traceback: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the job is preparing, running or stopping (not yet ended)."""
        return self.state in ("preparing", "running", "stopping")

    @property
    def fraction(self) -> float:
        """The share of the planned batches done, in [0, 1], counting the epoch in flight."""
        if not self.epochs:
            return 0.0
        return min(1.0, (self.epoch + (self.batch / self.batches if self.batches else 0)) / self.epochs)

    def to_dict(self) -> dict:
        """The status as plain values, with ``active`` and ``fraction``."""
        return {**asdict(self), "active": self.active, "fraction": self.fraction}


class Job:
    """Train one run folder in a daemon thread. ``stop()`` ends after the current batch."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, resume: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._status = JobStatus(run_dir=str(self.run_dir), epochs=config.epochs)
        self._thread: threading.Thread | None = None
        self._epoch_began = 0.0
        self.result = None  # the TrainResult once finished

    # ------------------------------------------------------------ control
    def start(self) -> Job:
        """Start training in a daemon thread; returns the job. A job starts once."""
        if self._thread is not None:
            raise RuntimeError("this job was already started; create a new Job to train again")
        self._set(state="preparing", started_at=time.time())
        self._thread = threading.Thread(target=self._run, name=f"csl-train-{self.run_dir.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        # Checked and set under one lock: a job that finishes meanwhile must not be left "stopping".
        """Ask the job to end after the current batch; the run stays resumable."""
        with self._lock:
            if self._status.active:
                self._status.state = "stopping"
        self._stop.set()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Wait for the thread to end (at most ``timeout`` seconds); returns the status then."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def status(self) -> JobStatus:
        """A copy of the current status, safe to keep and read from any thread."""
        with self._lock:
            return replace(self._status, losses=list(self._status.losses),
                           accuracies=list(self._status.accuracies),
                           seconds_per_epoch=list(self._status.seconds_per_epoch))

    # ------------------------------------------------------------ the thread
    def _set(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    def _run(self) -> None:
        try:
            from .train import train  # torch loads with the first job, not with the dashboard

            self.result = train(self.config, self.run_dir, resume=self.resume, callbacks=self)
            state = "stopped" if self.result.stopped else "finished"
            self._set(state=state, test_accuracy=self.result.test_accuracy, finished_at=time.time(),
                      eta_seconds=None)
        except BaseException as e:  # the status must say why, whatever it was
            self._set(state="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
                      finished_at=time.time(), eta_seconds=None)

    # ------------------------------------------------------------ callbacks from train()
    def on_start(self, info: dict) -> None:
        """Callback from ``train``: the epochs and batches planned, and where it starts."""
        self._epoch_began = time.perf_counter()
        self._set(state="stopping" if self._stop.is_set() else "running", epochs=info["epochs"],
                  epoch=info["start_epoch"], batches=info["batches"], batch=0)

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        """Callback from ``train`` after every batch: progress and the time left."""
        elapsed = time.perf_counter() - self._epoch_began
        with self._lock:
            s = self._status
            s.batch, s.batches = batch, batches
            per_batch = elapsed / batch
            remaining = (batches - batch) + batches * (s.epochs - epoch - 1)
            history = s.seconds_per_epoch
            s.eta_seconds = ((history[-1] / batches) if history else per_batch) * remaining

    def on_epoch(self, epoch: int, summary: dict) -> None:
        """Callback from ``train`` after every epoch: its mean loss, accuracy and seconds."""
        self._epoch_began = time.perf_counter()
        with self._lock:
            s = self._status
            s.epoch = epoch + 1
            s.batch = 0
            s.losses.append(summary["loss"])
            s.accuracies.append(summary["accuracy"])
            s.seconds_per_epoch.append(summary["seconds"])

    def should_stop(self) -> bool:
        """Polled by ``train`` after every batch: whether :meth:`stop` was asked."""
        return self._stop.is_set()


class JobRegistry:
    """The training jobs of one process, by run folder: the dashboard keeps one (``st.cache_resource``),
    shared by every session and tab."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def get(self, run_path: str | Path | None) -> Job | None:
        if run_path is None:
            return None
        with self._lock:
            return self._jobs.get(_key(run_path))

    def start(self, job: Job, *, alone: bool = False) -> Job:
        """Start ``job``; refused while its run folder trains, and with ``alone`` while any job trains (the
        New run form: a second click on Start, or a second tab, never starts a second training)."""
        with self._lock:
            current = self._jobs.get(_key(job.run_dir))
            if current is not None and current.status().active:
                raise RunError(f"{job.run_dir} is already training; stop it first")
            busy = [other for other in self._jobs.values() if other.status().active]
            if alone and busy:
                raise RunError(f"{busy[0].run_dir.name} is training; stop it first, or wait until it finishes")
            self._jobs[_key(job.run_dir)] = job
            return job.start()   # under the lock: "preparing" before any other start can look

    def discard(self, run_path: str | Path) -> None:
        """Forget the job of ``run_path`` if it has ended (a failed job stays listed until then)."""
        with self._lock:
            job = self._jobs.get(_key(run_path))
            if job is not None and not job.status().active:
                del self._jobs[_key(run_path)]

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> list[Job]:
        return [job for job in self.all() if job.status().active]


def _key(run_path: str | Path) -> str:
    return str(Path(run_path).resolve())
