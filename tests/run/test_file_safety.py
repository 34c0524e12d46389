"""Round two of the red-team corpus, files: nothing a run folder (shared, downloaded, damaged) or an export
option names is ever deleted or overwritten. Each test names the issue-20 finding it holds."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csl_core.config import TrainConfig
from csl_core.engine.train import train
from csl_core.run.decisions import DecisionLog
from csl_core.run.export import MARK, export_run, remove_export_leftovers, write_imagefolder
from csl_core.run.folders import run_lock
from csl_core.run.store import RunError, RunStore
from tests.support import ROOT
from tests.support.files import folder_of_classes, png, tree_digest


def victim(tmp_path: Path, name: str = "victim.txt", data: bytes = b"a user's file\n") -> Path:
    folder = tmp_path / "home"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- 1. export --out over the original images

def test_an_export_never_replaces_a_tree_it_did_not_write(tmp_path, make_run):
    data = tmp_path / "data"
    folder_of_classes(data / "imagefolder", classes=("a", "b"))
    files = sorted(str(p) for p in (data / "imagefolder").rglob("*.png"))
    store = make_run(tmp_path / "run", paths=files, labels=[0, 0, 1, 1], classes=["a", "b"],
                     epochs=1, config={}, loss=lambda epoch: np.linspace(0, 1, 4))
    before = tree_digest(data)
    with pytest.raises(ValueError, match="not written by an export"):
        export_run(store.path, imagefolder=True, out_dir=data)      # the person's own images
    assert tree_digest(data) == before
    # a tree an export wrote is marked, and replaced by the next export; one holding the run's images is not
    result = export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")
    assert (result.tree_path / MARK).is_file()
    export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")
    (data / "imagefolder" / MARK).write_text("planted")
    with pytest.raises(ValueError, match="an image of this run"):
        export_run(store.path, imagefolder=True, out_dir=data)
    assert {k: v for k, v in tree_digest(data).items() if MARK not in k} == before


# ---------------------------------------------------------------- 2. the lock never follows a link

@pytest.mark.parametrize("where", ["lock", "memorization/lock"])
def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, where, make_run):
    from csl_core.run.memorization import MemorizationFolder

    store = make_run(tmp_path / "run")
    target = victim(tmp_path)
    before = digest(target)
    (store.path / where).parent.mkdir(exist_ok=True)
    os.symlink(target, store.path / where)
    with pytest.raises(RunError, match="symbolic link"):
        if where == "lock":
            with run_lock(store.path):
                pass
        else:
            with MemorizationFolder(store).lock():
                pass
    if where == "lock":
        with pytest.raises(RunError, match="symbolic link"):
            train(TrainConfig(device="cpu"), store.path, resume=True)
    assert digest(target) == before and (store.path / where).is_symlink()


def test_the_run_package_imports_without_fcntl():
    """Windows has no fcntl: ``csl_core.run`` imports there, and says so only when a lock is taken."""
    script = ("import sys; sys.modules['fcntl'] = None\n"
              "import csl_core.run, csl_core.run.store, csl_core.run.files as f\n"
              "import tempfile, pathlib\n"
              "try:\n"
              "    with f.lock_file(pathlib.Path(tempfile.mkdtemp()) / 'lock'):\n"
              "        pass\n"
              "except csl_core.run.store.RunError as e:\n"
              "    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "neither fcntl nor msvcrt" in done.stdout


# ---------------------------------------------------------------- 3. the estimator's job file

def test_the_memorisation_job_file_is_never_written_through_a_link(tmp_path, monkeypatch, make_run):
    from csl_core.engine import memorization

    store = make_run(tmp_path / "run")
    target = victim(tmp_path)
    before = digest(target)
    (store.path / "memorization").mkdir()
    os.symlink(target, store.path / "memorization" / f".job-{os.getpid()}.npz")

    class NoPool:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("stop after the job file")

    monkeypatch.setattr(memorization, "ProcessPoolExecutor", NoPool)
    job = {"images": np.zeros((6, 4, 4, 1), np.uint8), "image_index": np.arange(6), "labels": np.zeros(6, int),
           "folder": str(store.path)}
    with pytest.raises(RuntimeError, match="stop after"):
        memorization._train_models(job, [0, 1], workers=2, total=2, progress=False)
    assert digest(target) == before
    assert sorted(p.name for p in (store.path / "memorization").iterdir()) == [f".job-{os.getpid()}.npz"]


# ---------------------------------------------------------------- 4. an export killed between its renames

def test_an_export_killed_between_its_renames_gets_its_tree_back(tmp_path, monkeypatch, make_run):
    files = [str(png(tmp_path / "src" / f"{i}.png", 10 * i)) for i in range(4)]
    store = make_run(tmp_path / "run", paths=files, labels=[0, 1, 0, 1], classes=["a", "b"],
                     epochs=1, config={}, loss=lambda epoch: np.linspace(0, 1, 4))
    first = export_run(store.path, imagefolder=True).tree_path
    kept = tree_digest(first)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.replace(first, first.with_name(f".imagefolder.old-{dead.pid}"))    # killed after the first rename
    assert remove_export_leftovers(first) == [] and tree_digest(first) == kept   # put back, not deleted
    # interrupted in this process: the second rename fails, the previous tree stays
    real_replace = os.replace

    def second_rename_fails(src, dst):
        if ".imagefolder." in str(src) and str(src).endswith(".tmp"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(KeyboardInterrupt):
        write_imagefolder(np.array(files), np.array(["x"] * 4), first)
    monkeypatch.undo()
    assert tree_digest(first) == kept
    assert sorted(p.name for p in first.parent.iterdir()) == ["cleaned_labels.csv", "imagefolder"]


# ---------------------------------------------------------------- arrays and the decision log in place

def test_an_array_written_in_place_is_never_a_link(tmp_path, make_run):
    store = make_run(tmp_path / "run", n=6, epochs=3, finished=2)
    loss = store.path / "arrays" / "loss.npy"
    outside = tmp_path / "home" / "mine.npy"
    outside.parent.mkdir()
    os.replace(loss, outside)                                  # a user's array of exactly the right shape
    os.symlink(outside, loss)
    before = digest(outside)
    record = {"loss": np.ones(6, np.float32), "correct": np.ones(6, bool), "margin": np.zeros(6, np.float32),
              "p_given": np.ones(6, np.float32), "p_max": np.ones(6, np.float32)}
    with pytest.raises(RunError, match="symbolic link"):
        store.write_epoch(2, record)
    assert digest(outside) == before


@pytest.mark.parametrize("name", ["decisions.sqlite", "decisions.sqlite-wal", "decisions.sqlite-journal"])
def test_the_decision_log_is_never_opened_through_a_link(tmp_path, name, make_run):
    store = make_run(tmp_path / "run")
    target = victim(tmp_path, data=b"")                         # empty: SQLite would make it a database
    os.symlink(target, store.path / name)
    with pytest.raises(RunError, match="symbolic link"):
        DecisionLog(store.path).record([0], "drop")
    assert target.read_bytes() == b""


# ---------------------------------------------------------------- 12. a link to the root inside a class folder

def test_a_link_back_to_the_root_is_reported_and_the_rest_trains(tmp_path):
    folder_of_classes(tmp_path / "r", classes=("cat", "dog"), per_class=20)
    os.symlink("..", tmp_path / "r" / "cat" / "loop")
    config = TrainConfig(data=f"imagefolder:{tmp_path / 'r'}", epochs=1, device="cpu", image_size=8,
                         compute_embeddings=False)
    train(config, tmp_path / "run")
    store = RunStore(tmp_path / "run")
    assert store.num_samples == 40
    assert any("loop" in e["id"] and "symbolic-link loop" in e["reason"] for e in store.report()["skipped"])


# ---------------------------------------------------------------- 15. the estimator rebuilds data checked

def test_the_estimator_never_downloads_what_a_run_folder_asks_for(tmp_path, monkeypatch, make_run):
    import torchvision

    from csl_core.engine.memorization import estimate_memorization

    fetched = []

    def fetch(root, *args, **kwargs):
        fetched.append(root)
        raise RuntimeError("no network in this test")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fetch)
    store = make_run(tmp_path / "run", config={"data": f"cifar10:{tmp_path / 'into'}", "download": True})
    store.update_meta(completed=True)
    with pytest.raises(Exception, match="not found|allow downloading") as caught:
        estimate_memorization(store.path, models=2)
    assert fetched == [] and "no network" not in str(caught.value)
    assert not (tmp_path / "into").exists()


# ---------------------------------------------------------------- a deliberately shared run folder

def test_a_shared_run_folder_with_links_at_every_file_changes_nothing_outside_it(tmp_path, monkeypatch, open_app):
    """Links to a user's files planted at every file the project writes in a run folder (the table of
    run/layout.py, the memorisation folder, the export), through train, resume, memorisation, export and
    every dashboard page: each file outside the run folder keeps its bytes (checksummed before and after)."""

    from csl_core.engine.memorization import estimate_memorization
    from csl_core.run import layout
    from csl_core.run.interop import export_interop

    home = tmp_path / "home"
    home.mkdir()
    run = tmp_path / "runs" / "shared"
    run.mkdir(parents=True)
    planted: list[Path] = []

    def plant(relative: str) -> None:
        link = run / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        target = home / f"victim-{len(planted)}"
        target.write_bytes(b"" if len(planted) % 2 else f"user data {len(planted)}\n".encode())
        os.symlink(target, link)
        planted.append(link)

    def unplant(relative: str) -> None:
        (run / relative).unlink()

    before = tree_digest(home)

    def unchanged() -> None:
        now = tree_digest(home)
        assert {k: v for k, v in now.items() if k in before} == before
        assert set(now) == set(before) | {k for k in now if k.startswith("victim-")} and len(now) == len(
            [p for p in home.iterdir()]), now

    # ---- train: links at every file a training writes (the lock and meta.json would refuse it whole)
    written_by_training = [layout.SAMPLES, layout.REPORT, layout.PROBABILITIES, layout.EMBEDDINGS, layout.CHECKPOINT,
                           layout.NEIGHBOURS, layout.FINGERPRINTS, "class-loss-0002.npy", ".checkpoint.pt.x.tmp"]
    for name in written_by_training:
        plant(name)
    before = tree_digest(home)

    class StopAfterTwo:                      # a training killed after its second epoch, to be resumed below
        done = 0

        def on_start(self, info): pass
        def on_batch(self, epoch, batch, batches): pass
        def on_epoch(self, epoch, summary): self.done = epoch + 1
        def should_stop(self): return self.done >= 2

    train(TrainConfig(data="demo", epochs=3, subset=300, device="cpu"), run, callbacks=StopAfterTwo())
    assert RunStore(run).finished_epochs == 2
    unchanged()
    # ---- resume: a lock that is a link refuses; an array that is a link is never written in place
    plant(layout.LOCK)
    before = tree_digest(home)
    with pytest.raises(RunError, match="symbolic link"):
        train(TrainConfig(device="cpu"), run, resume=True)
    unchanged()
    unplant(layout.LOCK)
    loss = run / layout.array_name("loss")
    shutil_copy = home / "loss-copy.npy"
    shutil_copy.write_bytes(loss.read_bytes())
    loss.unlink()
    os.symlink(shutil_copy, loss)
    before = tree_digest(home)
    with pytest.raises(RunError, match="symbolic link"):          # epoch 3 is written in place: refused
        train(TrainConfig(device="cpu"), run, resume=True)
    unchanged()
    loss.unlink()
    loss.write_bytes(shutil_copy.read_bytes())
    train(TrainConfig(device="cpu"), run, resume=True)
    assert RunStore(run).meta["completed"] and RunStore(run).finished_epochs == 3
    # ---- memorisation: its lock refuses; every other file it writes replaces a link, never writes through it
    plant("memorization/lock")
    before = tree_digest(home)
    with pytest.raises(RunError, match="symbolic link"):
        estimate_memorization(run, models=2)
    unchanged()
    unplant("memorization/lock")
    for name in ("memorization/estimate.parquet", "memorization/comparison.json", "memorization/log.json",
                 "memorization/models/model-00000.npz", "memorization/models/model-00001.npz"):
        plant(name)
    before = tree_digest(home)
    estimate_memorization(run, models=2)
    unchanged()
    # ---- export: the cleaned labels and every interop file over links
    for name in ("export/cleaned_labels.csv", "export/label_issues.csv", "export/fiftyone_fields.json",
                 "export/samples.csv", "export/classes.txt", "export/probabilities.npy", "export/arrays/loss.npy",
                 "export/arrays/correct.npy"):
        plant(name)
    before = tree_digest(home)
    export_run(run)
    export_interop(run, run / "export", label_issue_table=True, fiftyone=True, arrays=True)
    unchanged()
    # ---- the dashboard: the decision log and every kept file are links; every page loads
    kept = sorted(p.name for p in run.iterdir() if p.name.startswith(("scores-", "evaluation-", "class-loss-")))
    for name in [*kept, layout.NEIGHBOURS, layout.FINGERPRINTS, layout.DECISIONS, f"{layout.DECISIONS}-wal",
                 f"{layout.DECISIONS}-shm",
                 f"{layout.DECISIONS}-journal"]:
        plant(name)
    before = tree_digest(home)
    monkeypatch.setenv("CSL_RUNS_DIR", str(run.parent))
    sys.path.insert(0, str(ROOT))
    at = open_app()
    for page in ["pages/run.py", "pages/trajectories.py", "pages/galleries.py", "pages/review.py",
                 "pages/focus.py", "pages/pairs.py", "pages/duplicates.py", "pages/export.py", "pages/evaluate.py",
                 "pages/memorization.py"]:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    unchanged()
    assert all(p.is_symlink() or not p.exists() or p.is_file() for p in planted)
