"""`audit` writes the questions and records a person's answers (the simulated reviewer and a real one go through
the same file); `export --cleaning suggested` is a dry run that writes nothing into the run."""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from csl_core.analysis.noise_rate import noise_count
from csl_core.cli import main
from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunStore


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_audit_round_trip_records_the_answers_and_the_count_rests_on_them(copy_demo, tmp_path, capsys):
    run = copy_demo(tmp_path / "demo")
    before = _digest(run)
    questions = tmp_path / "questions.csv"
    assert main(["audit", str(run), "--out", str(questions), "--size", "40"]) == 0
    assert _digest(run) == before                            # asking writes nothing into the run
    table = pd.read_csv(questions)
    assert len(table) == 40 and table["answer"].isna().all()
    store = RunStore(run)
    scores = store.scores()
    truth, names = scores["true_label"].to_numpy(), store.classes
    # the reviewer answers from the truth: right, or the true class's name (one says only "wrong")
    table["answer"] = ["right" if scores.at[i, "label"] == truth[i] else names[truth[i]] for i in table["index"]]
    wrong_rows = table.index[table["answer"] != "right"]
    if len(wrong_rows):
        table.loc[wrong_rows[0], "answer"] = "wrong"
    table.to_csv(questions, index=False)
    capsys.readouterr()
    assert main(["audit", str(run), "--answers", str(questions)]) == 0
    printed = capsys.readouterr().out
    effective = DecisionLog(run).effective(len(scores), scores["label"].to_numpy())
    asked = table["index"].to_numpy()
    assert (effective.loc[asked, "action"] != "undecided").all()
    right = table["answer"].eq("right").to_numpy()
    assert (effective.loc[asked[right], "action"] == "keep").all()
    count = noise_count(scores, effective["action"].to_numpy(object))
    assert count.answers == 40 and count.text() in printed and "from your 40 answers" in printed
    # a bad answer names the file and line, and records nothing
    table.loc[3, "answer"] = "giraffe"
    table.to_csv(questions, index=False)
    batches = len(DecisionLog(run).batches())
    assert main(["audit", str(run), "--answers", str(questions)]) == 2
    assert "line 5" in capsys.readouterr().err and len(DecisionLog(run).batches()) == batches


def test_the_dry_run_cleaning_writes_the_plan_on_top_of_decisions_and_nothing_into_the_run(copy_demo, tmp_path):
    from csl_core.analysis.cleaning import suggested_cleaning

    run = copy_demo(tmp_path / "demo")
    store = RunStore(run)
    scores = store.scores()
    labels = scores["label"].to_numpy()
    DecisionLog(run).record([0], "drop")              # a person's decision the dry run keeps
    before = _digest(run)
    out = tmp_path / "dry"
    assert main(["export", str(run), "--cleaning", "suggested", "--format", "csv", "--out", str(out)]) == 0
    assert _digest(run) == before
    written = pd.read_csv(out / "cleaned_labels.csv")
    plan = suggested_cleaning(scores, DecisionLog(run).effective(len(scores), labels)["action"].to_numpy(object))
    assert written.loc[0, "action"] == "drop"
    assert written["action"].eq("relabel").sum() == plan.counts()["relabel"] > 0
    assert (written["action"] == "drop").sum() == plan.counts()["drop"] + 1
    assert "p_wrong" in written.columns
    with pytest.raises(SystemExit):
        main(["export", str(run), "--cleaning", "nonsense", "--out", str(out)])
    assert main(["export", str(run), "--cleaning", "suggested", "--format", "csv"]) == 2   # would write into the run
    assert _digest(run) == before
