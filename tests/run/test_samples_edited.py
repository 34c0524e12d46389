"""#29 (5): a ``samples.csv`` edited after the run was made (a label changed, the size kept) is said by the
damage check every page and ``info`` share, and the export refuses the run instead of writing the kept
scores' old labels."""
from __future__ import annotations

import shutil

import pytest

from csl_core.errors import CSLError
from csl_core.run.export import export_run
from csl_core.run.store import run_problems


def test_a_sample_table_edited_after_the_run_is_said_and_never_exported(tmp_path, demo_run):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    assert run_problems(run) == []
    lines = (run / "samples.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    column = header.index("label")
    row[column] = "1" if row[column] != "1" else "2"                # another class, the same size
    (run / "samples.csv").write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    problems = run_problems(run)
    assert any("samples.csv was changed after the run was made" in p for p in problems)
    with pytest.raises(CSLError, match="samples.csv was changed"):
        export_run(run, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_info_says_a_sample_table_edited_after_the_run(tmp_path, demo_run, capsys):
    from csl_core.cli import main

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    assert main(["info", str(run)]) == 0
    capsys.readouterr()
    text = (run / "samples.csv").read_text()
    (run / "samples.csv").write_text(text[:-2] + ("1" if text[-2] != "1" else "2") + text[-1:])   # last cell
    assert main(["info", str(run)]) == 2
    assert "samples.csv was changed after the run was made" in capsys.readouterr().err
