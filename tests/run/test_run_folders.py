"""Run folders: two trainings into one folder, the lock released when its holder dies, run names that cannot leave
the runs folder, the leftovers of a killed writer."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from csl_core.config import TrainConfig
from csl_core.data import build_training_set
from csl_core.engine.train import train
from csl_core.run.files import lock_file
from csl_core.run.folders import remove_leftovers, run_folder_for, run_lock
from csl_core.run.store import RunError, RunLockedError, RunStore
from tests.support import ROOT

# ---------------------------------------------------------------- two trainings into one folder

def test_a_training_waits_for_no_one_and_writes_nothing_while_another_holds_the_folder(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):                                        # another training, still loading its data
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            train(TrainConfig(data="demo", epochs=1, device="cpu"), out)
        assert sorted(p.name for p in out.iterdir()) == ["lock"]   # no meta.json, no samples.csv
    assert not (out / "lock").exists()


def test_two_trainings_started_at_once_leave_one_consistent_run(tmp_path):
    """The issue's race: both passed the "already exists" check before either locked, and the loser
    rewrote meta.json and samples.csv. Each thread opens the lock file itself, as a process would."""
    import threading

    out = tmp_path / "run"
    start = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def trainer(subset: int) -> None:
        config = TrainConfig(data="demo", epochs=1, device="cpu", subset=subset, compute_embeddings=False)
        start.wait()
        try:
            outcomes[subset] = train(config, out)
        except RunError as e:
            outcomes[subset] = e

    threads = [threading.Thread(target=trainer, args=(n,)) for n in (200, 300)]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    failed = [o for o in outcomes.values() if isinstance(o, RunError)]
    assert len(outcomes) == 2 and len(failed) == 1, outcomes
    assert "being trained" in str(failed[0]) or "already holds a run" in str(failed[0])
    store = RunStore(out)
    config = TrainConfig.from_run(store.meta["config"], out)
    rebuilt = build_training_set(config.data, subset=config.subset, seed=config.seed)
    assert store.samples()["sample_id"].tolist() == rebuilt.samples["sample_id"].tolist()
    assert store.meta.get("completed") and store.num_samples == config.subset
    assert not (out / "lock").exists()


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    file = tmp_path / "lock"
    script = ("import sys, time\nfrom csl_core.run.files import lock_file\n"
              "with lock_file(sys.argv[1]) as h:\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with lock_file(file) as record:
        assert record["pid"] == holder.pid
    holder.kill()
    holder.wait()
    with lock_file(file) as record:
        assert record is None




def test_a_run_name_cannot_leave_the_runs_folder(tmp_path):
    for name in ("..", ".", "../x", "a/b", "", ".hidden", "a\\b", "x\x00"):
        with pytest.raises(ValueError, match="plain folder name"):
            run_folder_for(tmp_path / "runs", name)
    assert run_folder_for(tmp_path / "runs", "demo-1") == tmp_path / "runs" / "demo-1"


def test_orphan_temporary_files_are_removed_when_the_trainer_takes_the_run(tmp_path, make_run):
    """The temporary files as the writers name them (temp_file_beside, so atomic_file): those of files only the
    lock holder writes go when the lock is taken; those of files others write while it trains stay."""
    import os
    from pathlib import Path

    from csl_core.run.files import temp_file_beside

    store = make_run(tmp_path / "run")

    def planted(path: Path, suffix: str = ".tmp") -> Path:
        fd, name = temp_file_beside(path, suffix=suffix)
        os.write(fd, b"half")
        os.close(fd)
        return Path(name)

    orphans = [planted(store.path / name) for name in ("checkpoint.pt", "embeddings.npy", "probabilities.npy",
                                                       "images.npy", "arrays/loss.npy", "arrays/eval_loss.npy")]
    others = [planted(store.path / "meta.json"), planted(store.path / "scores-2-abc.parquet"),
              planted(store.path / "fingerprints.npz", ".tmp.npz")]   # a page may be writing these now
    keep = store.path / "notes.txt"
    keep.write_text("mine")
    with run_lock(store.path):
        assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in others) and keep.read_text() == "mine"
    assert remove_leftovers(store.path) == []
