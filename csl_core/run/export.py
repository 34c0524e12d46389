"""The cleaned label file (and, for files on disk, a cleaned ImageFolder tree) built from the decisions.

The CSV has one row per sample: ``id_or_path, original_label, label, action, csl, csl_rank,
suggested_label, suggested_confidence`` with labels as class names (the suggestion is the likeliest class
other than the given one, its confidence that class's share of the evidence, in [0, 1]); ``action`` is
keep / relabel / drop / undecided.
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

from ..errors import DataError, InputError
from .decisions import DecisionLog
from .export_marker import MARK, not_written_by_export, write_manifest
from .files import O_NOFOLLOW, atomic_write_bytes, csv_safe
from .health import samples_changed
from .layout import EXPORT, META, SAMPLES
from .store import RunError, RunStore

CSV_NAME = "cleaned_labels.csv"
TREE_NAME = "imagefolder"
CSV_COLUMNS = ["id_or_path", "original_label", "label", "action", "csl", "csl_rank", "suggested_label",
               "suggested_confidence", "p_wrong"]
CLEANINGS = ("suggested",)   # what `export --cleaning` can apply on top of the person's decisions (a dry run)


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
        raise InputError(f"{len(scores)} scored samples but {len(effective)} decision states")
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
        "suggested_confidence": (scores["suggested_confidence"].to_numpy(np.float64).round(4)
                                 if "suggested_confidence" in scores.columns else np.nan),
        "p_wrong": scores["p_wrong"].to_numpy(np.float64).round(4) if "p_wrong" in scores.columns else np.nan,
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


def refuse_run_folder(out: str | Path) -> None:
    """Raise :class:`DataError` when ``out`` is a run folder (it holds ``meta.json``): an export writes its
    ``samples.csv``, arrays and label files beside a run, never over one's own files (the run would be
    damaged for good)."""
    out = Path(out)
    if (out / META).exists() or (out / META).is_symlink():
        raise DataError(f"{out} is a run folder; an export never writes into one (it would replace the run's "
                        f"own files). Choose another output folder, such as {out / EXPORT}")


def with_cleaning(scores: pd.DataFrame, effective: pd.DataFrame) -> pd.DataFrame:
    """``effective`` (the person's decisions) with the suggested cleaning applied on top of it to the undecided
    samples (:func:`csl_core.analysis.cleaning.suggested_cleaning`, which rests on those decisions too)."""
    from ..analysis.cleaning import suggested_cleaning

    plan = suggested_cleaning(scores, effective["action"].to_numpy(object),
                              sources=effective["source"].to_numpy(object))
    acted = plan.action != "keep"
    out = effective.copy()
    out.loc[acted, "action"] = plan.action[acted]
    out.loc[acted, "label"] = plan.label[acted]
    return out


def export_run(run_path: str | Path, *, include_dropped: bool = True, imagefolder: bool = False,
               scores: pd.DataFrame | None = None, out_dir: str | Path | None = None,
               cleaning: str | None = None) -> ExportResult:
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
    cleaning:
        ``"suggested"``: a dry run of the suggested cleaning, applied on top of the person's decisions in what is
        written, recorded nowhere; the run is only read (``out_dir`` must lie outside it).
    """
    if cleaning is not None and cleaning not in CLEANINGS:
        raise DataError(f"unknown cleaning {cleaning!r}; known: {', '.join(CLEANINGS)}")
    store = RunStore(run_path, read_only=cleaning is not None)
    if cleaning is not None and (out_dir is None or Path(out_dir).resolve().is_relative_to(store.path.resolve())):
        raise DataError(f"a dry run of the {cleaning} cleaning writes nothing into the run {store.path}: give an "
                        "output folder outside it (--out DIR)")
    changed = samples_changed(store.path / SAMPLES, store.meta)   # its kept scores would hold other labels
    if changed:
        raise RunError(f"{store.path} is not exported: " + " ".join(changed))
    if scores is None:
        scores = store.scores()
    classes = store.classes
    labels = scores["label"].to_numpy(np.int64)
    effective = DecisionLog(store.path, read_only=store.read_only).effective(len(scores), labels)
    if cleaning is not None:
        effective = with_cleaning(scores, effective)
    out = Path(out_dir) if out_dir is not None else store.path / EXPORT
    refuse_run_folder(out)
    if out.is_symlink():
        raise DataError(f"{out} is a symbolic link; an export writes only into a real folder, so remove "
                         "the link or pass another output folder")
    remove_export_leftovers(out / TREE_NAME)   # a tree moved aside by a killed export is put back, CSV only too
    if imagefolder:  # refused before anything is written
        if "path" not in scores.columns:
            raise DataError(f"{store.path}: this run's images are not files on disk (source "
                             f"{store.meta.get('source')!r}), so there is no ImageFolder tree to build; "
                             "export the CSV instead")
        _check_replaceable(out / TREE_NAME, scores["path"].astype(str).to_numpy())
    table = cleaned_labels(scores, effective, classes, include_dropped=include_dropped)
    csv_path = out / CSV_NAME
    atomic_write_bytes(csv_path, csv_bytes(table))
    result = ExportResult(csv_path=csv_path, rows=len(table), summary=class_summary(labels, effective, classes))
    if imagefolder:
        kept = effective["action"].to_numpy(object) != "drop"
        paths = scores["path"].astype(str).to_numpy()[kept]
        final = np.asarray(classes, dtype=object)[effective["label"].to_numpy(np.int64)[kept]]
        result.tree_path = out / TREE_NAME
        result.links = write_imagefolder(paths, final, result.tree_path)
    return result


def csv_bytes(table: pd.DataFrame) -> bytes:
    """The CSV file exactly as :func:`export_run` writes it (for a download button); text cells that would
    start a spreadsheet formula are neutralised with a leading ``'``."""
    return csv_safe(table).to_csv(index=False, float_format="%.6g").encode()


def write_imagefolder(paths: np.ndarray, labels: np.ndarray, target: str | Path) -> dict[str, int]:
    """Replace ``target`` with a tree ``<label>/<file name>`` of links to ``paths``.

    The tree is built in a new folder beside ``target`` and swapped in, so a reader sees the old tree
    or the new one. An existing ``target`` is replaced only when an export wrote it (it holds the
    :data:`MARK` file) and none of ``paths`` lies inside it: a folder of the person's own images (the
    data a run was trained on) is never deleted. If the swap is interrupted, the previous tree is put
    back (at once, or by the next export). No two entries ever share a name: two labels that make the
    same folder name (``sandal/boot`` and ``sandal_boot``, or names differing only in case) get distinct
    folders, and a file name already taken in a folder (case-insensitively) gets ``__<sample order>``
    and, if needed, a counter appended. Every entry is created exclusively (a copy is opened with
    ``O_EXCL`` and ``O_NOFOLLOW``), so nothing is ever written through an existing link into an original
    file. Returns how many entries are symbolic links, hard links and copies.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent.is_symlink():
        raise DataError(f"{target.parent} is a symbolic link; an export writes only into a real folder, "
                         "so remove the link or choose another output folder")
    remove_export_leftovers(target)
    _check_replaceable(target, paths)
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"))
    made = {"symlink": 0, "hardlink": 0, "copy": 0}
    try:
        folders = _folder_names(sorted({str(label) for label in labels}))
        used: dict[str, set[str]] = {}
        for order, (source, label) in enumerate(zip(paths, labels)):
            source = Path(source)
            folder_name = folders[str(label)]
            taken = used.setdefault(folder_name, set())
            name = _free_name(source, order, taken)
            taken.add(name.casefold())
            folder = building / folder_name
            folder.mkdir(exist_ok=True)
            made[_link(source.resolve(), folder / name)] += 1
        write_manifest(building)
        old = None
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        try:
            os.replace(building, target)
        except BaseException:
            if old is not None and not target.exists():
                os.replace(old, target)  # the previous tree back where it was
            raise
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(building)
        raise
    return made


def _check_replaceable(target: Path, paths) -> None:
    """Raise :class:`DataError` (a ``ValueError``) unless ``target`` is absent or a tree an export wrote that
    holds nothing but what the export wrote (its manifest, :data:`MARK`, lists every entry with its kind and
    inode) and none of ``paths`` (the originals the new tree links to). A copy of an export (``cp -rL``),
    or an export's tree a person added a file to, is never deleted."""
    if not (target.exists() or target.is_symlink()):
        return
    mark = target / MARK
    if target.is_symlink() or not target.is_dir() or mark.is_symlink() or not mark.is_file():
        raise DataError(f"{target} exists and was not written by an export (it has no {MARK} file); an "
                        "export never replaces a folder it did not write. Choose another output folder, or "
                        "move that one away")
    inside = _first_inside(paths, target)
    if inside is not None:
        raise DataError(f"{target} holds {inside}, an image of this run: replacing the tree would delete it. "
                        "Export into another folder")
    foreign = not_written_by_export(target)
    if foreign is not None:
        raise DataError(f"{target} holds {foreign}, which no export wrote there (a copy of an export, or a file "
                        "added to it): an export never deletes a folder holding anything it did not write. "
                        "Move that file (or the folder) away, or export into another folder")


def _first_inside(paths, folder: Path) -> str | None:
    roots = {str(folder.absolute()), os.path.realpath(folder)}
    for path in paths:
        for candidate in (os.path.abspath(str(path)), os.path.realpath(str(path))):
            if any(candidate == root or candidate.startswith(root + os.sep) for root in roots):
                return str(path)
    return None


def remove_export_leftovers(target: str | Path) -> list[Path]:
    """Clean up after exports killed midway beside ``target``: a replaced tree (``.<name>.old-<pid>``) is
    put back as ``target`` when an export was killed between its two renames (``target`` missing),
    otherwise removed; half-built trees (``.<name>.<pid>.*.tmp``) are removed. Those of a live process
    are left alone. Returns what was removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in sorted(target.parent.iterdir()):
        name = entry.name
        pid = None
        old = name.startswith(f".{target.name}.old-")
        if old:
            pid = name.rsplit("-", 1)[-1]
        elif name.startswith(f".{target.name}.") and name.endswith(".tmp"):
            pid = name[len(target.name) + 2:].split(".", 1)[0]
        if pid is None or not pid.isdigit() or _alive(int(pid)) or entry.is_symlink():
            continue
        if old and not (target.exists() or target.is_symlink()):
            os.replace(entry, target)  # killed between the two renames: the previous tree is restored
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    """Delete an export tree without following any link in it (links are removed, never their targets)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _folder_names(labels: list[str]) -> dict[str, str]:
    """One distinct folder name per label, also on case-insensitive file systems."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for label in labels:
        base = _safe_folder_name(label)
        name, counter = base, 2
        while name.casefold() in taken:
            name = f"{base}__{counter}"
            counter += 1
        taken.add(name.casefold())
        names[label] = name
    return names


def _free_name(source: Path, order: int, taken: set[str]) -> str:
    name = source.name
    if name.casefold() not in taken:
        return name
    name, counter = f"{source.stem}__{order}{source.suffix}", 2
    while name.casefold() in taken:
        name = f"{source.stem}__{order}_{counter}{source.suffix}"
        counter += 1
    return name


def _link(source: Path, destination: Path) -> str:
    if not source.is_file():
        raise FileNotFoundError(f"{source} (listed in the run's sample table) no longer exists; restore "
                                "it or export the CSV only")
    try:
        os.symlink(source, destination)
        return "symlink"
    except FileExistsError:
        raise
    except OSError:
        pass
    try:
        os.link(source, destination)
        return "hardlink"
    except FileExistsError:
        raise
    except OSError:
        pass
    # O_EXCL | O_NOFOLLOW: a copy only ever creates a new file, never opens one (or a link) that exists.
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
        shutil.copyfileobj(f, out)
    shutil.copystat(source, destination, follow_symlinks=False)
    return "copy"


def _safe_folder_name(name: str) -> str:
    """A class name as a folder name: path separators would nest folders, so they are replaced."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace("\x00", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else f"class_{cleaned or 'empty'}"
