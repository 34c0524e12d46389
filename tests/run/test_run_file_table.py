"""#29: every file of the run-file table (``RUN_FILES``) is read through one checked reader. Each file as a
FIFO, a symbolic link, larger than its bound, or holding the wrong shape, type or out-of-range values gives one
clear message naming it (or is computed again), never a hang and never a traceback, in every command that reads
a run: ``info``, ``scores``, ``duplicates``, ``export`` and the damage check every page shares."""
from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import threading
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csl_core.cli import main
from csl_core.run.decisions import DecisionLog
from csl_core.run.duplicates import neighbour_index
from csl_core.run.layout import ARRAYS, MAX_BYTES, RUN_FILES, max_bytes
from csl_core.run.memorization import MemorizationFolder
from csl_core.run.store import RunStore, run_problems

HANG = 60   # seconds: a command still reading after this waits on a FIFO


def _concrete(run: Path, name: str) -> Path:
    """The file of ``run`` that table entry ``name`` stands for."""
    if "<" not in name:
        return run / name.rstrip("/")
    if name.startswith(ARRAYS):
        return run / ARRAYS / "loss.npy"
    found = sorted(run.glob(name.split("<")[0] + "*" + Path(name).suffix))
    assert found, f"the demo run keeps no {name}"
    return found[0]


def _bad_content(run: Path, file: Path, name: str) -> None:
    """Replace ``file`` with content of the wrong shape, type or range for table entry ``name``."""
    store = RunStore(run)
    n, k = store.num_samples, len(store.classes)
    npy = {f"{ARRAYS}/<field>.npy": np.full((n, store.meta["epochs"] + 1), 0.5, np.int8),
           "probabilities.npy": np.full((n, k + 1), 0.5, np.float32),
           "embeddings.npy": np.full((n + 1, 3), 0.5, np.float32),
           "images.npy": np.zeros((n, 2, 2, 3), np.float64),
           "class-loss-<epochs>.npy": np.zeros((1, 1), np.int8)}
    if name in npy:
        with open(file, "wb") as f:
            np.save(f, npy[name])
    elif name == "samples.csv":
        table = store.samples().copy()
        table["label"] = k + 7
        table.to_csv(file, index=False)
    elif name.startswith("scores-"):
        kept = pd.read_parquet(file)
        kept["label"] = k + 7
        kept["suggested_label"] = -3
        kept.to_parquet(file)
    elif name == "neighbours.npz":
        with np.load(file) as data:
            arrays = {key: data[key] for key in data.files}
        arrays["indices"] = arrays["indices"].astype(np.float64) + 0.5   # float indices
        np.savez(file.with_suffix(""), **arrays)
    elif name == "fingerprints.npz":
        np.savez(file.with_suffix(""), hashes=np.zeros(n, "S16"), thumbnails=np.zeros((n, 3), np.float64))
    elif name == "decisions.sqlite":
        with sqlite3.connect(file) as db:   # a relabel to a class the run does not have, and to NULL
            db.execute("INSERT INTO batches(action, source, note, created, tab) VALUES ('relabel', '', '', 0, '')")
            batch = db.execute("SELECT MAX(id) FROM batches").fetchone()[0]
            db.executemany("INSERT INTO decisions(batch, sample, label, action) VALUES (?, ?, ?, 'relabel')",
                           [(batch, 0, 99), (batch, 1, None)])
    elif name in ("meta.json", "report.json") or name.endswith(".json"):
        file.write_text(json.dumps({"epochs": 3, "skipped": "x", "is_mislabeled": [1], "classes": 5}))
    elif name.endswith("/"):
        shutil.rmtree(file, ignore_errors=True)
        file.write_text("a file where a folder belongs")
    else:
        file.write_bytes(os.urandom(64))


def _out_of_range(run: Path, file: Path, name: str) -> None:
    """Replace ``file`` with content of the right shape and type but values out of range for ``name`` (where
    the entry has no range of its own, the wrong shape or type of :func:`_bad_content`)."""
    store = RunStore(run)
    n = store.num_samples
    if name == f"{ARRAYS}/<field>.npy":
        values = np.load(file)
        values[3, 0] = -2.5                                                    # a negative loss
        np.save(file, values)
    elif name in ("probabilities.npy", "embeddings.npy"):
        values = np.load(file)
        values[5] = 7.0 if name == "probabilities.npy" else np.inf            # not a probability; not finite
        np.save(file, values)
    elif name == "neighbours.npz":
        with np.load(file) as data:
            arrays = {key: data[key] for key in data.files}
        arrays["indices"][0, 0] = n + 5                                        # no such sample
        np.savez(file.with_suffix(""), **arrays)
    elif name == "fingerprints.npz":
        with np.load(file) as data:
            arrays = {key: data[key] for key in data.files}
        arrays["thumbnails"][2, 1] = np.nan
        np.savez(file.with_suffix(""), **arrays)
    elif name.startswith("scores-"):
        kept = pd.read_parquet(file)
        kept["suggested_confidence"] = 3.0
        kept.to_parquet(file)
    elif name == "meta.json":
        meta = json.loads(file.read_text())
        file.write_text(json.dumps({**meta, "num_samples": -4, "finished_epochs": 99}))
    elif name == "report.json":
        file.write_text(json.dumps({"skipped": [], "epochs": [{"epoch": -1, "seconds": -5.0, "accuracy": 7}]}))
    elif name == "samples.csv":
        table = store.samples().copy()
        table.loc[0, "label"] = -1
        table.to_csv(file, index=False)
    elif name.startswith("memorization/models/"):
        with np.load(file) as data:
            arrays = {key: data[key] for key in data.files}
        arrays["p_given"][0] = 4.0
        np.savez(file.with_suffix(""), **arrays)
    else:
        _bad_content(run, file, name)


def _craft(run: Path, name: str, how: str, tmp_path: Path) -> Path:
    file = _concrete(run, name)
    if how in ("bad", "range"):
        (_bad_content if how == "bad" else _out_of_range)(run, file, name)
        return file
    meta = json.loads((run / "meta.json").read_text())
    if file.is_dir():
        shutil.rmtree(file)
    if how == "fifo":
        file.unlink(missing_ok=True)
        os.mkfifo(file)
    elif how == "link":
        target = tmp_path / "elsewhere" / file.name
        target.parent.mkdir(exist_ok=True)
        if file.exists():
            os.replace(file, target)
        else:
            target.write_bytes(b"")
        os.symlink(target, file)
    elif how == "oversized":
        bound = max_bytes(name, meta)
        if not file.exists():
            file.write_bytes(b"")
        os.truncate(file, bound + 1 if bound is not None else file.stat().st_size + 4096)   # sparse
    return file


def _command(argv: list[str] | Callable) -> tuple[int | None, str]:
    """``main(argv)`` (or a call) in a thread: its exit status (``None``: it hung) and what it printed to
    stderr; an exception escaping it is returned as its traceback (a failure)."""
    result: dict = {}
    err = io.StringIO()

    def run():
        try:
            result["rc"] = argv() if callable(argv) else main(argv)
        except BaseException:   # noqa: BLE001 -- the test reports it
            result["traceback"] = traceback.format_exc()

    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(HANG)
    if "traceback" in result:
        return -1, result["traceback"]
    return (None if thread.is_alive() else result["rc"]), err.getvalue()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, demo_run) -> Path:
    """The demo run with every file of the table: a decision, a lock record, an images array, an export and
    a memorisation folder."""
    run = tmp_path_factory.mktemp("table") / "run"
    shutil.copytree(demo_run, run)
    store = RunStore(run)
    DecisionLog(run).record([0], "drop")
    (run / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    if not (run / "images.npy").exists():
        np.save(run / "images.npy", np.zeros((store.num_samples, 8, 8, 1), np.uint8))
    neighbour_index(store, embeddings=True)                         # neighbours.npz
    (run / "export").mkdir(exist_ok=True)
    (run / "memorization").mkdir(exist_ok=True)
    n = store.num_samples
    MemorizationFolder(store).save_model(0, np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.float32), 1.0)
    (run / "memorization" / ".job-1.k3j9x_.npz").write_bytes(b"")   # a worker file a killed estimate left
    return run


def test_the_table_bounds_every_file():
    assert set(MAX_BYTES) == set(RUN_FILES)


@pytest.mark.parametrize("how", ["fifo", "link", "oversized", "bad", "range"])
@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_every_run_file_crafted_gives_one_clear_message(full_run, tmp_path, name, how):
    if how == "oversized" and name.endswith("/"):
        pytest.skip("a folder has no size")
    run = tmp_path / "run"
    shutil.copytree(full_run, run, symlinks=True)
    file = _craft(run, name, how, tmp_path)
    shown = file.name
    for argv in (["info", str(run)], ["scores", str(run), "--top", "3"], ["duplicates", str(run), "--top", "1"],
                 ["export", str(run), "--out", str(tmp_path / "out"), "--format", "csv,cleanlab"]):
        rc, err = _command(argv)
        assert rc is not None, f"{argv[0]} hung on {name} as {how}"
        assert rc != -1, f"{argv[0]} raised on {name} as {how}:\n{err}"
        assert rc == 0 or shown in err, f"{argv[0]} on {name} as {how} said: {err[-600:]}"
        assert "Traceback" not in err
        if os.environ.get("CSL_TABLE_REPORT"):   # what each command said, for a person reading the table
            print(f"\nREPORT {name} {how} {argv[0]} rc={rc} {err.strip()[-150:]}")
    found: list = []
    rc, err = _command(lambda: found.extend(run_problems(run)) or 0)     # the check every page and listing makes
    assert rc == 0, f"the damage check on {name} as {how}: {'hung' if rc is None else err}"
