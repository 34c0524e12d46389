"""The command line end to end on the demo."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csl_core.analysis.scores import default_score, suspicion
from csl_core.cli import main
from csl_core.run.store import RunStore


def test_train_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--epochs", "1", "--subset", "300", "--out", str(out), "--quiet"]) == 0
    assert f"run folder: {out}" in capsys.readouterr().out
    store = RunStore(out)
    assert store.finished_epochs == 1 and store.meta["config"]["subset"] == 300


def test_threads_sets_torchs_cpu_threads_and_refuses_zero(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["train", "--threads", "0", "--out", str(tmp_path / "never")]) == 2
        assert "--threads must be at least 1" in capsys.readouterr().err
        assert not (tmp_path / "never").exists()
        out = tmp_path / "run"
        assert main(["train", "--epochs", "1", "--subset", "200", "--threads", "2", "--out", str(out), "--quiet"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_info_prints_the_detection_auroc(demo_run, capsys):
    assert main(["info", str(demo_run)]) == 0
    text = capsys.readouterr().out
    match = re.search(r"AUROC\s+csl\s+([0-9.]+)\s+\((\d+) injected mislabeled samples\)", text)
    assert match, text
    assert float(match.group(1)) > 0.9
    assert int(match.group(2)) == RunStore(demo_run).samples()["is_mislabeled"].sum()
    assert "epochs     4/4 finished" in text


def test_scores_prints_the_top_and_writes_every_sample_to_csv(demo_run, tmp_path, capsys):
    table = tmp_path / "scores.csv"
    assert main(["scores", str(demo_run), "--csv", str(table)]) == 0
    printed = capsys.readouterr().out
    scores = pd.read_csv(table)
    assert len(scores) == RunStore(demo_run).num_samples
    assert {"index", "sample_id", "label", "csl", "csl_rank", "aum", "suggested_label"} <= set(scores.columns)
    assert np.all(np.diff(suspicion(scores, default_score(scores))) <= 0)  # the default ranking, most suspicious first
    assert scores["sample_id"].iloc[0] in printed
    assert main(["scores", str(demo_run), "--by", "aum", "--top", "3"]) == 0
    assert main(["scores", str(demo_run), "--by", "vibes"]) == 2
    assert "known scores" in capsys.readouterr().err


def test_scores_top_n_writes_n_rows_names_the_suggested_class_and_prints_the_absolute_path(
        demo_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = RunStore(demo_run)
    classes = ["ankle_boot", *store.classes[1:]]   # a name, not an index, is what the dashboard shows
    monkeypatch.setattr(RunStore, "classes", property(lambda self: classes))
    assert main(["scores", str(demo_run), "--top", "7", "--csv", "top.csv"]) == 0
    printed = capsys.readouterr().out
    written = pd.read_csv(tmp_path / "top.csv")
    assert len(written) == 7
    assert f"wrote 7 rows to {tmp_path / 'top.csv'}" in printed
    assert written["suggested_class"].astype(str).tolist() == [classes[c] for c in written["suggested_label"]]
    header = next(line for line in printed.splitlines() if "suggested_class" in line)
    table = [line for line in printed.split(header, 1)[1].splitlines()[1:] if not line.startswith("index")]
    assert len(table) == 7
    for line, label in zip(table, written["suggested_label"]):
        assert classes[label] in line.split()


def test_export_prints_absolute_paths(demo_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(demo_run), "--format", "csv,cleanlab", "--out", "out"]) == 0
    written = [line.rsplit(" ", 1)[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert written and all(Path(path).is_absolute() and Path(path).exists() for path in written), written


def test_help_says_each_default_once_and_never_none():
    import argparse

    from csl_core.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        formatter = command._get_formatter()
        for action in command._actions:
            text = formatter._get_help_string(action) if action.help else ""
            assert "(default: None)" not in text, (name, action.dest, text)
            assert text.count("(default") <= 1, (name, action.dest, text)
        assert "(default: None)" not in command.format_help(), name


def test_bad_data_exits_2_with_a_message_and_no_traceback(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    (tmp_path / "labels.csv").write_text("path,label\na.png,1\nb.png,2.5\n")
    done = subprocess.run([sys.executable, "-m", "csl_core", "train", "--data", f"csv:{tmp_path / 'labels.csv'}",
                           "--out", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "labels.csv, line 3: label '2.5'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, words", [
    (["train", "--data", "imagefolder:/no/such/folder"], "does not exist"),
    (["train", "--data", "mnist"], "unknown data source"),
    (["train", "--device", "cuda:7"], "device"),
    (["info", "/no/such/run"], "not a run folder"),
])
def test_errors_a_person_can_act_on(tmp_path, capsys, argv, words):
    assert main([*argv, *(["--out", str(tmp_path / "run"), "--quiet"] if argv[0] == "train" else [])]) == 2
    assert words in capsys.readouterr().err


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data", "--epochs", "--model", "--out", "--inject-noise", "--eval-pass", "--resume"):
        assert option in text


class _Captured(BaseException):   # not an Exception: main reports those as bugs
    """Raised by the stand-in trainer with the config the command line built."""


@pytest.mark.parametrize("data", ["demo", "fashion-mnist"])
def test_train_defaults_are_the_configs_and_the_sources(monkeypatch, tmp_path, data):
    from dataclasses import asdict

    import csl_core.cli.runs  # noqa: F401  (the module whose train is replaced)
    from csl_core import cli
    from csl_core.config import TrainConfig
    from csl_core.data import SOURCES

    def capture(config, out, **kwargs):
        raise _Captured(config)

    monkeypatch.setattr(cli.runs, "train", capture)
    with pytest.raises(_Captured) as built:
        main(["train", "--data", data, "--out", str(tmp_path / "run"), "--quiet"])
    expected = TrainConfig(data=data, epochs=SOURCES[data].epochs or TrainConfig().epochs)
    assert asdict(built.value.args[0]) == asdict(expected)


def test_bench_defaults_are_the_bench_configs():
    from dataclasses import asdict, fields

    from csl_core.bench import BenchConfig
    from csl_core.cli import build_parser

    args = vars(build_parser().parse_args(["bench"]))
    assert {f.name: args[f.name] for f in fields(BenchConfig)} == asdict(BenchConfig())


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["scores"]])   # every subparser is built
def test_help_and_usage_errors_answer_without_importing_torch(argv, tmp_path):
    """``--help`` (and a usage error) is read before any command's module loads: torch is imported only by
    the commands that train, pandas only where a table is made (each costs about half a second of CPU)."""
    child = ("import sys\nfrom csl_core.cli import main\n"
             f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
             "print(','.join(m for m in ('torch', 'pandas') if m in sys.modules) or 'NEITHER', code)\n")
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.stdout.splitlines()[-1] == f"NEITHER {0 if '--help' in argv else 2}", done.stdout + done.stderr
    assert "usage:" in done.stdout + done.stderr


def test_the_package_exports_its_public_names_and_one_error_base():
    import csl_core
    from csl_core import CSLError, DataError, ImageUnavailable, RunError, RunLockedError, RunWriter
    from csl_core.run.writer import RunWriter as defined

    assert RunWriter is defined and "RunWriter" in csl_core.__all__
    for name in csl_core.__all__:
        assert getattr(csl_core, name) is not None, name
    # one base for everything a person must act on; the builtin each always was still catches it
    for error, builtin in ((DataError, ValueError), (RunError, RuntimeError), (RunLockedError, RuntimeError),
                           (ImageUnavailable, LookupError)):
        assert issubclass(error, CSLError) and issubclass(error, builtin)


def test_a_run_error_is_one_message_and_status_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err and "Traceback" not in err
