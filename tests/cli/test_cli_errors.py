"""The command line on damaged runs and bad options: the damaged file named without a traceback; bad training
options exit 2 and write nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.parametrize("damage, words", [
    ("truncate-meta", "meta.json is damaged"),
    ("meta-not-object", "meta.json is damaged"),
    ("meta-missing-key", "lacks 'num_samples'"),
    ("truncate-samples", "samples.csv"),
    ("truncate-loss", "loss.npy is damaged"),
    ("truncate-probabilities", "probabilities.npy is damaged"),
    ("truncate-embeddings", "embeddings.npy is damaged"),
])
def test_the_cli_names_the_damaged_file_without_a_traceback(tmp_path, capsys, damage, words, make_run):
    from csl_core.cli import main
    from csl_core.run.files import atomic_save_npy

    store = make_run(tmp_path / "run", n=40)
    meta = store.path / "meta.json"
    if damage == "truncate-meta":
        meta.write_text(meta.read_text()[:30])
    elif damage == "meta-not-object":
        meta.write_text("[1, 2, 3]")
    elif damage == "meta-missing-key":
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "num_samples"}))
    elif damage == "truncate-samples":
        table = store.path / "samples.csv"
        table.write_text("\n".join(table.read_text().splitlines()[:10]) + "\n")
    elif damage == "truncate-loss":
        with open(store.path / "arrays" / "loss.npy", "r+b") as f:
            f.truncate(200)
    else:
        name = damage.split("-")[1]
        atomic_save_npy(store.path / f"{name}.npy", np.full((40, 8), 0.5, np.float32))
        with open(store.path / f"{name}.npy", "r+b") as f:
            f.truncate(700)
    command = (["duplicates", str(store.path), "--embedding-neighbours"] if damage == "truncate-embeddings"
               else ["scores", str(store.path)])
    assert main(command) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize("options, words", [
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--inject-noise", "1.5"], "expected a fraction in [0, 1)"),
    (["--subset", "0"], "--subset must be positive"),
])
def test_bad_training_options_exit_2_and_write_nothing(tmp_path, capsys, options, words):
    from csl_core.cli import main

    try:
        code = main(["train", "--data", "demo", "--out", str(tmp_path / "run"), "--quiet", *options])
    except SystemExit as e:  # refused by the option parser itself
        code = e.code
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
