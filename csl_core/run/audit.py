"""The audit on disk: the questions a person answers and their answers recorded as decisions.

The questions are the samples :func:`csl_core.analysis.audit.audit_sample` picks (stratified over ``p_wrong``),
written as a CSV with an empty ``answer`` column; a person (or a simulated reviewer, through the same code) fills
it with ``right``, ``wrong`` or the true class name, and :func:`record_answers` records each answer in the run's
decision log as an ordinary decision (right: keep; a class name: relabel; wrong: drop), so the count, the audit
and the cleaning read them like any review decision.
"""
from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .decisions import Decision, DecisionLog
from .files import atomic_write_bytes
from .store import RunStore

QUESTION_COLUMNS = ["order", "index", "id_or_path", "given_label", "suggested_label", "p_wrong", "answer"]
RIGHT, WRONG = "right", "wrong"
SOURCE = "audit"
_MAX_ANSWER_BYTES = 64 << 20


def audit_questions(store: RunStore, size: int, *, seed: int | None = None) -> pd.DataFrame:
    """The audit's questions for ``store`` (samples not decided yet), in the order to ask them; ``seed`` None: the
    run's own (:func:`~csl_core.analysis.audit.audit_seed`), the one the dashboard's audit asks with."""
    from ..analysis.audit import audit_sample, audit_seed
    from ..analysis.noise_rate import run_p_wrong

    scores = store.scores()
    labels = scores["label"].to_numpy(np.int64)
    decided = DecisionLog(store.path, read_only=True).effective(len(scores), labels)["action"].to_numpy(object)
    p = run_p_wrong(scores)
    seed = audit_seed(store.name) if seed is None else seed
    asked = audit_sample(p, size, seed=seed, exclude=decided != "undecided")
    names = np.asarray(store.classes, dtype=object)
    ids = (scores["path"] if "path" in scores.columns else scores["sample_id"]).astype(str).to_numpy()
    suggested = scores["suggested_label"].to_numpy(np.int64) if "suggested_label" in scores else labels
    return pd.DataFrame({"order": np.arange(1, len(asked) + 1), "index": asked, "id_or_path": ids[asked],
                         "given_label": names[labels[asked]], "suggested_label": names[suggested[asked]],
                         "p_wrong": p[asked].round(4), "answer": ""}, columns=QUESTION_COLUMNS)


def write_questions(table: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    atomic_write_bytes(out, table.to_csv(index=False).encode())
    return out


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", str(text)).strip()


def read_answers(path: str | Path, store: RunStore) -> list[Decision]:
    """The answers of a filled-in questions file as decisions, each checked: a row names its sample by
    ``index`` (or ``id_or_path``) and answers ``right``, ``wrong`` or a class name; an empty answer is skipped.
    A bad row is a :class:`DataError` that names the file and line, and nothing is recorded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such answers file")
    if path.stat().st_size > _MAX_ANSWER_BYTES:
        raise DataError(f"{path}: {path.stat().st_size:,} bytes is too large for an answers file")
    classes = {_norm(c): i for i, c in enumerate(store.classes)}
    n = store.num_samples
    scores = store.scores()
    labels = scores["label"].to_numpy(np.int64)
    ids = (scores["path"] if "path" in scores.columns else scores["sample_id"]).astype(str).tolist()
    by_id = {name: i for i, name in enumerate(ids)}
    keep, drop, relabel, relabel_to = [], [], [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if "answer" not in (reader.fieldnames or []) or not {"index", "id_or_path"} & set(reader.fieldnames):
            raise DataError(f"{path}: needs an 'answer' column and an 'index' or 'id_or_path' column "
                            f"(the file `csl-clean audit RUN --out FILE` writes)")
        for line, row in enumerate(reader, start=2):
            answer = _norm(row.get("answer") or "")
            if not answer:
                continue
            raw = (row.get("index") or "").strip()
            if raw:
                if not raw.isdigit() or int(raw) >= n:
                    raise DataError(f"{path}, line {line}: index {raw!r} is not a sample of this run (0..{n - 1})")
                index = int(raw)
            elif row.get("id_or_path") in by_id:
                index = by_id[row["id_or_path"]]
            else:
                raise DataError(f"{path}, line {line}: {row.get('id_or_path')!r} is not a sample of this run")
            if answer.lower() == RIGHT:
                keep.append(index)
            elif answer.lower() == WRONG:
                drop.append(index)
            elif answer in classes:
                if classes[answer] == labels[index]:
                    keep.append(index)
                else:
                    relabel.append(index)
                    relabel_to.append(classes[answer])
            else:
                raise DataError(f"{path}, line {line}: answer {answer!r} is not 'right', 'wrong' or a class of "
                                f"this run ({', '.join(store.classes[:5])}{', ...' if len(store.classes) > 5 else ''})")
    decisions = [Decision(keep, "keep"), Decision(drop, "drop")]
    if relabel:
        decisions.append(Decision(relabel, "relabel", relabel_to))
    return [d for d in decisions if len(d.indices)]


def record_answers(path: str | Path, store: RunStore) -> int:
    """Record the answers of ``path`` in the run's decision log as one batch; returns how many."""
    decisions = read_answers(path, store)
    if not decisions:
        return 0
    DecisionLog(store.path).record_batch(decisions, source=SOURCE, note=f"answers from {Path(path).name}")
    return sum(len(d.indices) for d in decisions)
