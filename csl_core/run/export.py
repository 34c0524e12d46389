"""The cleaned label file (and, for files on disk, a cleaned ImageFolder tree) built from the decisions.

The CSV has one row per sample: ``id_or_path, original_label, label, action, csl, csl_rank,
suggested_label`` with labels as class names; ``action`` is keep / relabel / drop / undecided.
Undecided samples keep their label. Files are written under a temporary name and renamed, and the
output depends only on the run and its decisions, so exporting again gives the same bytes.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .decisions import DecisionLog
from .files import atomic_write_bytes
from .store import RunStore

EXPORT_DIR = "export"
CSV_NAME = "cleaned_labels.csv"
TREE_NAME = "imagefolder"
CSV_COLUMNS = ["id_or_path", "original_label", "label", "action", "csl", "csl_rank", "suggested_label"]


@dataclass
class ExportResult:
    """What an export wrote: the cleaned label file and its row count, a summary of the actions and,
    for file sources asked for it, the ImageFolder tree."""

    csv_path: Path
    rows: int
    summary: pd.DataFrame
    tree_path: Path | None = None
    links: dict[str, int] = field(default_factory=dict)   # how tree entries were made: symlink/hardlink/copy


def cleaned_labels(scores: pd.DataFrame, effective: pd.DataFrame, classes: list[str], *,
                   include_dropped: bool = True) -> pd.DataFrame:
    """The cleaned label table (pure).

    Parameters
    ----------
    scores:
        ``RunStore.scores()``: indexed by sample, with ``sample_id``, ``label``, ``csl``, ``csl_rank``,
        optionally ``path`` and ``suggested_label``.
    effective:
        ``DecisionLog.effective(...)``: indexed by sample, with ``action`` and ``label``.
    include_dropped:
        Keep dropped samples as rows (``action`` says ``drop``) or leave them out.
    """
    if len(scores) != len(effective):
        raise ValueError(f"{len(scores)} scored samples but {len(effective)} decision states")
    names = np.asarray(classes, dtype=object)
    ids = scores["path"] if "path" in scores.columns else scores["sample_id"]
    table = pd.DataFrame({
        "id_or_path": ids.astype(str).to_numpy(),
        "original_label": names[scores["label"].to_numpy(np.int64)],
        "label": names[effective["label"].to_numpy(np.int64)],
        "action": effective["action"].to_numpy(object),
        "csl": scores["csl"].to_numpy(np.float64),
        "csl_rank": scores["csl_rank"].to_numpy(np.int64),
        "suggested_label": (names[scores["suggested_label"].to_numpy(np.int64)]
                            if "suggested_label" in scores.columns else ""),
    }, index=scores.index)
    if not include_dropped:
        table = table[table["action"] != "drop"]
    return table[CSV_COLUMNS]


def class_summary(original_labels: np.ndarray, effective: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per class (by original label): samples, kept, relabeled (away), dropped, undecided, and the
    class size after cleaning (relabels counted where they land, drops removed)."""
    original = np.asarray(original_labels, dtype=np.int64)
    action = effective["action"].to_numpy(object)
    final = effective["label"].to_numpy(np.int64)
    k = len(classes)

    def count(mask: np.ndarray, labels: np.ndarray = original) -> np.ndarray:
        return np.bincount(labels[mask], minlength=k)

    everything = np.ones(len(original), dtype=bool)
    summary = pd.DataFrame({
        "class": classes,
        "samples": count(everything),
        "kept": count(action == "keep"),
        "relabeled": count(action == "relabel"),
        "dropped": count(action == "drop"),
        "undecided": count(action == "undecided"),
        "after_cleaning": count(action != "drop", final),
    })
    total = summary.drop(columns="class").sum()
    summary.loc[len(summary)] = ["all", *total.tolist()]
    return summary


def export_run(run_path: str | Path, *, include_dropped: bool = True, imagefolder: bool = False,
               scores: pd.DataFrame | None = None, out_dir: str | Path | None = None) -> ExportResult:
    """Write the cleaned label CSV (and optionally the ImageFolder tree) for a run.

    Parameters
    ----------
    run_path:
        The run folder; its decisions are read from ``decisions.sqlite``.
    include_dropped:
        Whether dropped samples appear in the CSV (with ``action = drop``); never in the tree.
    imagefolder:
        Also build ``<out_dir>/imagefolder/<label>/<file>`` from links to the original files
        (symbolic links; hard links or copies where those fail). Needs a file source.
    scores:
        The run's scores if the caller has them already (saves recomputing).
    out_dir:
        Where to write; default ``<run>/export``.
    """
    store = RunStore(run_path)
    if scores is None:
        scores = store.scores()
    classes = store.classes
    labels = scores["label"].to_numpy(np.int64)
    effective = DecisionLog(store.path).effective(len(scores), labels)
    out = Path(out_dir) if out_dir is not None else store.path / EXPORT_DIR
    table = cleaned_labels(scores, effective, classes, include_dropped=include_dropped)
    csv_path = out / CSV_NAME
    atomic_write_bytes(csv_path, csv_bytes(table))
    result = ExportResult(csv_path=csv_path, rows=len(table), summary=class_summary(labels, effective, classes))
    if imagefolder:
        if "path" not in scores.columns:
            raise ValueError(f"{store.path}: this run's images are not files on disk (source "
                             f"{store.meta.get('source')!r}), so there is no ImageFolder tree to build; "
                             "export the CSV instead")
        kept = effective["action"].to_numpy(object) != "drop"
        paths = scores["path"].astype(str).to_numpy()[kept]
        final = np.asarray(classes, dtype=object)[effective["label"].to_numpy(np.int64)[kept]]
        result.tree_path = out / TREE_NAME
        result.links = write_imagefolder(paths, final, result.tree_path)
    return result


def csv_bytes(table: pd.DataFrame) -> bytes:
    """The CSV file exactly as :func:`export_run` writes it (for a download button)."""
    return table.to_csv(index=False, float_format="%.6g").encode()


def write_imagefolder(paths: np.ndarray, labels: np.ndarray, target: str | Path) -> dict[str, int]:
    """Replace ``target`` with a tree ``<label>/<file name>`` of links to ``paths``.

    The tree is built beside ``target`` and swapped in, so a reader sees the old tree or the new one.
    Two files with the same name in one class get the second's sample order appended. Returns how
    many entries are symbolic links, hard links and copies.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    made = {"symlink": 0, "hardlink": 0, "copy": 0}
    try:
        used: set[tuple[str, str]] = set()
        for order, (source, label) in enumerate(zip(paths, labels)):
            source = Path(source)
            name = source.name
            if (label, name) in used:
                name = f"{source.stem}__{order}{source.suffix}"
            used.add((label, name))
            folder = building / _safe_folder_name(str(label))
            folder.mkdir(exist_ok=True)
            made[_link(source.resolve(), folder / name)] += 1
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(building, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return made


def _link(source: Path, destination: Path) -> str:
    if not source.is_file():
        raise FileNotFoundError(f"{source} (listed in the run's sample table) no longer exists; restore "
                                "it or export the CSV only")
    try:
        os.symlink(source, destination)
        return "symlink"
    except OSError:
        pass
    try:
        os.link(source, destination)
        return "hardlink"
    except OSError:
        shutil.copy2(source, destination)
        return "copy"


def _safe_folder_name(name: str) -> str:
    """A class name as a folder name: path separators would nest folders, so they are replaced."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else f"class_{cleaned or 'empty'}"
