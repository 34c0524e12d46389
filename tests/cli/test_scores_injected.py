"""#31: `scores` names the injected truth `injected_mislabeled` and shows it only where labels were flipped on
purpose; `--help` and docs/formats.md say what it is; `info`'s lines (but the count's, #32) fit a terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from csl_core.cli import main
from csl_core.run.store import RunStore

ROOT = Path(__file__).resolve().parents[2]


def test_scores_names_the_injected_truth_where_labels_were_flipped(demo_run, tmp_path, capsys):
    assert main(["scores", str(demo_run), "--top", "5", "--csv", str(tmp_path / "top.csv")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "sample_id" in line)
    assert "injected_mislabeled" in header and "is_mislabeled" not in header
    written = pd.read_csv(tmp_path / "top.csv")
    assert "injected_mislabeled" in written and "is_mislabeled" not in written
    truth = RunStore(demo_run).samples().set_index("sample_id")["is_mislabeled"]
    assert written["injected_mislabeled"].tolist() == truth.loc[written["sample_id"]].tolist()


def test_scores_of_a_run_where_no_label_was_flipped_show_no_truth(demo_run, tmp_path, capsys, monkeypatch):
    real = RunStore.scores
    # as a folder of one's own with duplicates injected and no label flipped: the column is all False
    monkeypatch.setattr(RunStore, "scores", lambda self, *a, **k: real(self, *a, **k).assign(is_mislabeled=False))
    assert main(["scores", str(demo_run), "--top", "5", "--csv", str(tmp_path / "top.csv")]) == 0
    assert "mislabeled" not in capsys.readouterr().out
    assert not any("mislabeled" in c for c in pd.read_csv(tmp_path / "top.csv").columns)


def test_the_injected_truth_is_explained_in_the_help_and_the_formats_doc(capsys):
    try:
        main(["scores", "--help"])
    except SystemExit:
        pass
    helped = " ".join(capsys.readouterr().out.split())
    assert "injected_mislabeled says whether each sample's label was one of them" in helped
    assert "`injected_mislabeled`" in (ROOT / "docs" / "formats.md").read_text()


def test_info_lines_fit_a_terminal_the_memorised_warning_too(demo_run, capsys, monkeypatch):
    from csl_core.analysis import noise_rate

    real = noise_rate.standing
    monkeypatch.setattr(noise_rate, "standing", lambda *a, **k: {**real(*a, **k), "memorised": True})
    assert main(["info", str(demo_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("warning") and "memorised" in line for line in lines)
    long = [line for line in lines if len(line) > 100 and not line.startswith("noise")]   # the count: #32
    assert long == []
