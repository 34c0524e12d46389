"""The run folder: layout, epochs, memory maps, atomic writes and the trainer's lock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from csl_core.analysis.scores import score_set_version
from csl_core.engine.tracker import EPOCH_FIELDS
from csl_core.run.files import atomic_save_npy, atomic_write_csv, atomic_write_json
from csl_core.run.folders import list_runs
from csl_core.run.store import RunError, RunLockedError, RunStore


@pytest.fixture()
def make_store(make_run):
    """``make_store(path, n=6, epochs=3)``: a new run, no epoch written, ids "000".., classes "NA" and "null"
    (text a CSV reader would take for missing)."""
    def make(path, n=6, epochs=3) -> RunStore:
        return make_run(path, n=n, epochs=epochs, finished=0, classes=("NA", "null"), id_format="{:03d}",
                        config=None, image_index=False)
    return make


def epoch_record(n: int, value: float) -> dict:
    return {"loss": np.full(n, value, np.float32), "correct": np.ones(n, bool),
            "margin": np.zeros(n, np.float32), "p_given": np.full(n, 0.5, np.float32),
            "p_max": np.full(n, 0.5, np.float32)}


def test_create_lays_out_a_run_folder(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    meta = store.meta
    assert meta["num_samples"] == 6 and meta["epochs"] == 3 and meta["finished_epochs"] == 0
    assert meta["fields"] == list(EPOCH_FIELDS)
    samples = store.samples()
    assert samples["sample_id"].tolist()[:2] == ["000", "001"]  # ids stay text
    assert samples["class_name"].tolist()[:2] == ["NA", "null"]  # and class names are not read as missing
    assert store.array("loss").shape == (6, 0)
    assert np.isnan(store.array("loss", finished_only=False)).all()
    with pytest.raises(RunError, match="already holds a run"):
        make_store(tmp_path / "run")
    with pytest.raises(RunError, match="not a run folder"):
        RunStore(tmp_path)


def test_epochs_are_written_in_order_and_only_finished_ones_are_read(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    store.write_epoch(0, epoch_record(6, 1.0), probabilities=np.full((6, 2), 0.5), timing={"seconds": 1.5})
    with pytest.raises(RunError, match="out of order"):
        store.write_epoch(2, epoch_record(6, 3.0))
    store.write_epoch(1, epoch_record(6, 2.0))
    loss = store.array("loss")
    assert isinstance(loss, np.memmap)  # opened without loading it whole
    assert loss.shape == (6, 2) and loss[:, 1].tolist() == [2.0] * 6
    assert store.arrays()["correct"].dtype == np.bool_
    assert store.report()["epochs"] == [{"epoch": 0, "seconds": 1.5}]
    assert store.probabilities().shape == (6, 2)
    scores = store.scores()
    assert scores["csl"].tolist() == [3.0] * 6 and scores["sample_id"].iloc[0] == "000"


def test_writing_past_the_planned_epochs_grows_the_arrays(tmp_path, make_store):
    store = make_store(tmp_path / "run", epochs=1)
    store.write_epoch(0, epoch_record(6, 1.0))
    store.write_epoch(1, epoch_record(6, 2.0))
    assert store.meta["epochs"] == 2
    assert store.array("loss")[:, 0].tolist() == [1.0] * 6
    assert store.array("loss")[:, 1].tolist() == [2.0] * 6


def test_no_scores_before_the_first_epoch(tmp_path, make_store):
    with pytest.raises(RunError, match="no finished epoch"):
        make_store(tmp_path / "run").scores()


def test_checkpoint_round_trip_with_weights_only(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    assert store.load_checkpoint() is None
    model = torch.nn.Linear(3, 2)
    store.save_checkpoint({"epoch": 2, "model": model.state_dict()})
    state = store.load_checkpoint()
    assert state["epoch"] == 2 and torch.equal(state["model"]["weight"], model.weight.detach())
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """A reader looping over meta.json, a CSV and an .npy while a writer rewrites them never sees half a file."""
    meta, table, array = tmp_path / "meta.json", tmp_path / "samples.csv", tmp_path / "loss.npy"
    atomic_write_json(meta, {"version": 0, "payload": [0] * 2000})
    atomic_write_csv(table, pd.DataFrame({"version": [0] * 2000}))
    atomic_save_npy(array, np.zeros(20000, np.float32))
    done = threading.Event()
    read_once = threading.Event()
    errors: list[BaseException] = []

    def write():
        try:
            for version in range(1, 60):
                atomic_write_json(meta, {"version": version, "payload": [version] * (2000 + version)})
                atomic_write_csv(table, pd.DataFrame({"version": [version] * (2000 + version)}))
                atomic_save_npy(array, np.full(20000 + version, version, np.float32))
                if version % 10 == 0:   # let the reader in, however busy the machine
                    read_once.clear()
                    read_once.wait(timeout=60)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    versions = set()
    while not done.is_set() or reads < 3:
        with open(meta) as f:
            obj = json.load(f)
        assert obj["payload"] == [obj["version"]] * (2000 + obj["version"])
        frame = pd.read_csv(table)
        assert len(frame) == 2000 + frame["version"].iloc[0] and frame["version"].nunique() == 1
        values = np.load(array)
        assert len(values) == 20000 + values[0] and (values == values[0]).all()
        reads += 1
        versions.add(obj["version"])
        read_once.set()
    writer.join()
    assert not errors
    assert len(versions - {0, 59}) >= 3   # read while the writer was rewriting the files
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_reader_of_the_run_sees_only_whole_epochs(tmp_path, make_store):
    store = make_store(tmp_path / "run", n=20000, epochs=12)
    done = threading.Event()
    read_once = threading.Event()

    def write():
        try:
            for epoch in range(12):
                store.write_epoch(epoch, epoch_record(20000, epoch + 1.0), timing={"seconds": 0.1})
                read_once.clear()
                read_once.wait(timeout=60)   # the reader reads between (and during) every two epochs
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader = RunStore(tmp_path / "run")
    seen = set()
    while not done.is_set():
        loss = reader.arrays()["loss"]
        for epoch in range(loss.shape[1]):
            assert (loss[:, epoch] == epoch + 1.0).all()
        # the report is written before meta.json counts the epoch: it never lags the epochs a reader sees
        assert len(reader.report()["epochs"]) >= loss.shape[1]
        seen.add(loss.shape[1])
        read_once.set()
    writer.join()
    assert reader.finished_epochs == 12
    assert len(seen - {0, 12}) >= 3   # the reads did happen while the run was half written


def test_second_trainer_on_the_same_run_is_refused(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    with store.lock():
        assert store.is_locked()
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            with RunStore(tmp_path / "run").lock():
                pass
    assert not store.is_locked()
    with pytest.raises(KeyError):
        with store.lock():
            raise KeyError("crash")
    assert not (tmp_path / "run" / "lock").exists()  # a crash releases the lock


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    (tmp_path / "run" / "lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert not store.is_locked()
    with store.lock():
        holder = json.loads((tmp_path / "run" / "lock").read_text())
        assert holder["pid"] == os.getpid()


def test_list_runs_finds_run_folders_only(tmp_path, make_store):
    make_store(tmp_path / "a")
    (tmp_path / "not-a-run").mkdir()
    assert [p.name for p in list_runs(tmp_path)] == ["a"]
    assert list_runs(tmp_path / "missing") == []


def test_a_completed_run_keeps_its_scores_and_a_run_in_progress_does_not(tmp_path, make_store):
    store = make_store(tmp_path / "run", epochs=2)
    store.write_epoch(0, epoch_record(6, 1.0))
    first = store.scores()
    assert not list(store.path.glob("scores-*.parquet"))  # still training: nothing kept
    store.write_epoch(1, epoch_record(6, 2.0))
    store.update_meta(completed=True)
    computed = store.scores()
    kept = store.path / f"scores-0002-{score_set_version()}.parquet"
    assert kept.is_file()
    assert computed["csl"].tolist() == pytest.approx([3.0] * 6) and first["csl"].tolist() == pytest.approx([1.0] * 6)
    # The kept file is what a second opening reads: change it and the change shows.
    altered = computed.copy()
    altered["csl"] = 42.0
    altered.to_parquet(kept)
    pd.testing.assert_series_equal(store.scores()["csl"], altered["csl"])
    assert store.csl().tolist() == [42.0] * 6  # CSL alone comes from the kept file too
    kept.write_bytes(b"not parquet")  # a damaged file is computed again, not trusted
    assert store.scores()["csl"].tolist() == pytest.approx([3.0] * 6)


def test_a_score_added_to_the_table_appears_in_a_run_finished_before(tmp_path, monkeypatch, make_store):
    from csl_core.analysis import scores as scores_module

    store = make_store(tmp_path / "run", epochs=2)
    for epoch in range(2):
        store.write_epoch(epoch, epoch_record(6, 1.0 + epoch))
    store.update_meta(completed=True)
    store.keep_derived()
    before = sorted(p.name for p in store.path.glob("scores-*.parquet"))
    assert "loss_spread" not in store.scores().columns
    # one entry in the table: a toy score, the spread of each sample's loss over the epochs
    toy = scores_module.Score("loss_spread", "loss spread",
                              lambda x: np.nanmax(x["loss"], axis=1) - np.nanmin(x["loss"], axis=1))
    monkeypatch.setitem(scores_module.SCORES, "loss_spread", toy)
    scores = store.scores()
    assert scores["loss_spread"].tolist() == pytest.approx([1.0] * 6)
    assert scores_module.suspicion(scores, "loss_spread").tolist() == pytest.approx([1.0] * 6)
    after = sorted(p.name for p in store.path.glob("scores-*.parquet"))
    assert after != before and len(after) == 1   # kept under the new table's version, the old file gone
    assert "loss_spread" in pd.read_parquet(store.path / after[0]).columns


def test_files_written_atomically_get_ordinary_permissions(tmp_path, make_store):
    store = make_store(tmp_path / "run")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("meta.json", "samples.csv", "report.json"):
        assert (store.path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_class_mean_loss_per_class_and_epoch_kept_once_the_run_completes(tmp_path, make_store):
    store = make_store(tmp_path / "run", n=6, epochs=2)
    loss = np.array([1.0, 10.0, 3.0, 20.0, np.nan, 30.0], np.float32)  # labels alternate 0, 1
    store.write_epoch(0, {**epoch_record(6, 0.0), "loss": loss})
    np.testing.assert_allclose(store.class_mean_loss(), [[2.0], [20.0]])  # NaN (unseen) left out
    assert not list(store.path.glob("class-loss-*.npy"))  # still training: nothing kept
    store.write_epoch(1, {**epoch_record(6, 0.0), "loss": loss * 2})
    store.update_meta(completed=True)
    np.testing.assert_allclose(store.class_mean_loss(), [[2.0, 4.0], [20.0, 40.0]])
    kept = store.path / "class-loss-0002.npy"
    assert kept.is_file()
    np.save(kept, np.full((2, 2), 7.0))  # what a second opening reads
    assert store.class_mean_loss().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    np.save(kept, np.zeros((3, 2)))  # the wrong shape is computed again, not trusted
    np.testing.assert_allclose(store.class_mean_loss(), [[2.0, 4.0], [20.0, 40.0]])


def test_sample_table_keeps_ids_names_and_paths_as_written(tmp_path):
    from csl_core.run.store import read_sample_table

    table = pd.DataFrame({"index": [0, 1, 2, 3], "sample_id": ["007", "NA", "", 'a,b "q"'], "label": [0, 1, 0, 1],
                          "class_name": ["null", "NaN", "1.0", "é"],
                          "path": ["/x/007.png", "/x/NA", "/x/a,b.png", "/x/é.png"]})
    atomic_write_csv(tmp_path / "samples.csv", table)
    read = read_sample_table(tmp_path / "samples.csv")
    assert read.to_dict("list") == table.to_dict("list")
    assert read["label"].dtype == np.int64


def test_a_completed_run_keeps_what_the_dashboard_reads(tmp_path, make_store):
    store = make_store(tmp_path / "run", n=6, epochs=2)
    samples = store.samples().assign(is_mislabeled=[True, False, False, False, False, False])
    atomic_write_csv(store.path / "samples.csv", samples)
    for epoch in range(2):
        store.write_epoch(epoch, {**epoch_record(6, 0.5), "loss": np.array([3, 1, 0.5, 0.2, 0.1, 0.4], np.float32)})
    with pytest.raises(RunError, match="not complete"):
        store.keep_derived()
    assert store.evaluation()["scores"][0]["auroc"] == pytest.approx(1.0)  # computed, not kept
    assert not list(store.path.glob("evaluation-*.json"))
    store.update_meta(completed=True)
    store.keep_derived()
    kept = sorted(p.name for p in store.path.iterdir() if p.name.split("-")[0] in {"scores", "class", "evaluation"})
    version = score_set_version()
    assert kept == ["class-loss-0002.npy", f"evaluation-0002-{version}.json", f"scores-0002-{version}.parquet"]
    evaluation = json.loads((store.path / f"evaluation-0002-{version}.json").read_text())
    assert set(evaluation) == {"is_mislabeled"}  # no duplicate truth in this run
    assert evaluation["is_mislabeled"] == store.evaluation("is_mislabeled")
    with pytest.raises(RunError, match="no ground truth 'is_duplicate'"):
        store.evaluation("is_duplicate")


def test_atomic_file_leaves_the_target_as_it_was_when_writing_fails(tmp_path):
    from csl_core.run.files import atomic_file

    target = tmp_path / "meta.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]  # no temporary file left behind
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_meta_is_parsed_once_per_version_of_the_file(tmp_path, monkeypatch, make_store):
    from csl_core.run import tables

    parses = []
    real_load = json.load
    monkeypatch.setattr(tables.json, "load", lambda f: parses.append(f.name) or real_load(f))
    store = make_store(tmp_path / "run")                 # opening a new run reads the version it wrote
    for _ in range(5):
        assert store.meta["finished_epochs"] == 0
        assert RunStore(store.path).num_samples == 6      # another store object on the same folder
    assert len(parses) == 1
    store.write_epoch(0, epoch_record(6, 1.0))
    assert store.finished_epochs == 1 and RunStore(store.path).finished_epochs == 1
    atomic_write_json(store.path / "meta.json", {**store.meta, "source": "changed elsewhere"})  # another process
    assert store.meta["source"] == "changed elsewhere"
    assert len(parses) == 3


def test_training_set_rebuilds_the_runs_data_and_refuses_a_changed_source(demo_run, tmp_path, copy_demo):

    from csl_core.run.duplicates import run_images
    from csl_core.run.images import sample_image

    store = RunStore(demo_run)
    rebuilt = store.training_set()
    assert rebuilt.samples["sample_id"].tolist() == store.samples()["sample_id"].tolist()
    shown = np.asarray(sample_image(demo_run, 5))
    assert np.array_equal(shown, rebuilt.image(5)[..., 0])
    assert run_images(store).shape[0] == store.num_samples

    changed = tmp_path / "changed"
    copy_demo(changed)
    samples = pd.read_csv(changed / "samples.csv", keep_default_na=False)
    samples.loc[[3, 4], "sample_id"] = samples.loc[[4, 3], "sample_id"].to_numpy()  # the source reordered
    atomic_write_csv(changed / "samples.csv", samples)
    moved = RunStore(changed)
    with pytest.raises(RunError, match="no longer yields the samples .* first difference at sample 3"):
        moved.training_set()
    with pytest.raises(LookupError, match="no longer yields"):
        sample_image(changed, 3)                           # no image rather than the wrong one
    assert run_images(moved) is None


def test_a_run_of_a_newer_format_is_refused_with_a_clear_message(tmp_path, capsys, make_store):
    from csl_core.cli import main
    from csl_core.run.layout import FORMAT_VERSION, META

    store = make_store(tmp_path / "run")
    meta = json.loads((store.path / META).read_text())
    assert meta["format_version"] == FORMAT_VERSION
    atomic_write_json(store.path / META, {**meta, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(RunError, match=f"format {FORMAT_VERSION + 1} by a newer csl-clean.*Upgrade csl-clean"):
        RunStore(store.path)
    assert main(["info", str(store.path)]) == 2
    assert "newer csl-clean" in capsys.readouterr().err
    atomic_write_json(store.path / META, {**meta, "format_version": "one"})
    with pytest.raises(RunError, match="'format_version' is 'one'"):
        RunStore(store.path)
    del meta["format_version"]   # runs written before the field: format 1
    atomic_write_json(store.path / META, meta)
    assert RunStore(store.path).num_samples == 6


def _not_in_the_table(run: Path) -> list[str]:
    """Every file under ``run`` (subfolders included) that no RUN_FILES row names; a row ending in "/" (the
    export) covers its folder, SQLite's own -wal and -shm files go with the decision log."""
    import fnmatch

    from csl_core.run.layout import RUN_FILES, file_glob

    patterns = [file_glob(name) + ("*" if name.endswith("/") else "") for name in RUN_FILES]
    found = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    return [name for name in found if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
            and not fnmatch.fnmatch(name, "decisions.sqlite-*")]


def test_every_file_of_a_finished_run_is_in_the_run_file_table(demo_run, tmp_path, copy_demo):
    """A file a writer adds to a run folder without an entry in run/layout.py's table fails here."""
    from csl_core.run.decisions import DecisionLog
    from csl_core.run.duplicates import find_duplicates
    from csl_core.run.export import export_run

    run = copy_demo(tmp_path / "run")
    DecisionLog(run).record([0], "drop")   # the decision log, the duplicate cache and an export too
    find_duplicates(run)
    export_run(run)
    assert not _not_in_the_table(run), "files of a run folder missing from RUN_FILES"
    found = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    for name in ("meta.json", "samples.csv", "arrays/loss.npy", "embeddings.npy", "probabilities.npy",
                 "checkpoint.pt", "report.json", "neighbours.npz", "fingerprints.npz", "decisions.sqlite", "export/"):
        assert name in found or any(f.startswith(name) for f in found), name


@pytest.mark.slow
def test_every_file_of_a_memorisation_estimate_is_in_the_run_file_table(tmp_path, copy_demo):
    from csl_core.engine.memorization import estimate_memorization
    from csl_core.run.layout import (
        MEMORIZATION_COMPARISON,
        MEMORIZATION_ESTIMATE,
        MEMORIZATION_LOG,
        MEMORIZATION_SETTINGS,
    )

    run = copy_demo(tmp_path / "run")
    estimate_memorization(run, models=2, workers=2)     # two worker processes: the job file too
    assert not _not_in_the_table(run), "files of the memorisation folder missing from RUN_FILES"
    found = {str(p.relative_to(run)) for p in (run / "memorization").rglob("*") if p.is_file()}
    assert {MEMORIZATION_SETTINGS, MEMORIZATION_ESTIMATE, MEMORIZATION_COMPARISON, MEMORIZATION_LOG} <= found
    assert len([f for f in found if f.startswith("memorization/models/model-")]) == 2


def test_the_writer_and_the_trainer_finish_a_run_the_same_way(tmp_path, make_store):
    from csl_core.run.writer import RunWriter

    writer = RunWriter(tmp_path / "written", labels=[0, 1, 0, 1, 0, 1], classes=["a", "b"], epochs=5)
    for value in (1.0, 2.0):
        writer.write_epoch(epoch_record(6, value))
    stopped_early = writer.store
    writer.finish(embeddings=np.eye(6, 3), test_accuracy=0.5)
    for store in (stopped_early, make_store(tmp_path / "made", epochs=2)):
        if store is not stopped_early:
            for epoch in range(2):
                store.write_epoch(epoch, epoch_record(6, 1.0 + epoch))
            store.finish(embeddings=np.eye(6, 3), test_accuracy=0.5)
        meta = store.meta
        assert meta["completed"] and meta["epochs"] == meta["finished_epochs"] == 2   # trimmed to what ran
        assert store.report()["test_accuracy"] == 0.5 and store.embeddings().shape == (6, 3)
        assert list(store.path.glob(f"scores-0002-{score_set_version()}.parquet"))   # kept for the dashboard
    empty = make_store(tmp_path / "empty", epochs=2)
    with pytest.raises(RunError, match="no epoch was written"):
        empty.finish(embeddings=np.eye(6, 3))
    assert not (empty.path / "embeddings.npy").exists()   # refused before anything is written
    with pytest.raises(ValueError, match=r"embeddings have shape \(5, 3\)"):
        store.finish(embeddings=np.eye(5, 3))
