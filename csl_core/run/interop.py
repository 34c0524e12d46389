"""Runs in and out of other tools: per-epoch arrays from any framework in (``python -m csl_core import``),
and, out (``python -m csl_core export``), a cleanlab-style label-issue table, a FiftyOne-ready field
file and the run's raw arrays (which ``import`` reads back into an identical run).

Label-issue table (``label_issues.csv``), one row per sample, in cleanlab's column names:

===================  ====================================================================================
``id_or_path``       the file path (file sources) or sample id
``given_label``      the label the sample was trained with (class name)
``predicted_label``  the class with the most evidence (the suggested label where it outweighs the given one,
                     else the given label; :mod:`csl_core.analysis.suggest`)
``label_score``      1 - the sample's percentile in the default ranking (fused where the run has it, else CSL):
                     in [0, 1], low = suspicious (sorts as cleanlab's does)
``is_label_issue``   a person's decision where there is one (relabel/drop: True, keep: False), else
                     whether ``predicted_label`` differs from ``given_label``
``label``, ``action`` the label after the decisions and the decision (keep/relabel/drop/undecided)
``csl``, ``csl_rank`` cumulative sample loss and its rank (1 = highest)
===================  ====================================================================================

FiftyOne file (``fiftyone_fields.json``): ``{field: {filepath: value}}`` for the same columns, ready for
``dataset.set_values(field, values, key_field="filepath")``.
"""
from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.scores import default_score, rank_descending, suspicion
from ..errors import InputError
from .decisions import DecisionLog
from .export import refuse_run_folder
from .files import atomic_save_npy, atomic_write_bytes, atomic_write_csv, csv_safe, csv_unsafe
from .inputs import (
    check_class_names,
    check_embeddings,
    check_probabilities,
    check_square,
    check_unique,
    check_values,
    load_npy,
    long_to_wide,
)
from .layout import ARRAYS, EMBEDDINGS, IMAGES, PROBABILITIES, SAMPLES, array_name
from .schema import EPOCH_FIELDS, epoch_fields
from .store import RunStore
from .writer import RunWriter, sample_table

ISSUES_NAME = "label_issues.csv"
FIFTYONE_NAME = "fiftyone_fields.json"
CLASSES_TXT = "classes.txt"
ISSUE_COLUMNS = ["id_or_path", "given_label", "predicted_label", "label_score", "is_label_issue", "label",
                 "action", "csl", "csl_rank"]
PATH_COLUMNS = ("path", "filepath", "filename", "image")
ID_COLUMNS = ("sample_id", "id")
IMPORT_FIELDS = EPOCH_FIELDS + ("eval_loss",)


# ---------------------------------------------------------------- out

def label_issues(scores: pd.DataFrame, effective: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """The label-issue table (pure): ``scores`` is ``RunStore.scores()``, ``effective`` the decision state
    (``DecisionLog.effective``); one row per sample in sample order, columns :data:`ISSUE_COLUMNS`."""
    if len(scores) != len(effective):
        raise InputError(f"{len(scores)} scored samples but {len(effective)} decision states")
    names = np.asarray(list(classes), dtype=object)
    given = scores["label"].to_numpy(np.int64)
    predicted = given
    if {"suggested_label", "suggested_confidence", "label_evidence"} <= set(scores.columns):
        # the likeliest class by the evidence: the suggestion where it outweighs the given label
        outweighs = scores["suggested_confidence"].to_numpy(np.float64) > scores["label_evidence"].to_numpy(np.float64)
        predicted = np.where(outweighs, scores["suggested_label"].to_numpy(np.int64), given)
    rank = scores["csl_rank"].to_numpy(np.int64)
    n = len(scores)
    # the queue's default ranking: its most suspicious sample (rank 1) -> 0, its least -> 1
    default_rank = rank_descending(suspicion(scores, default_score(scores)))
    label_score = (default_rank - 1) / max(1, n - 1)
    action = effective["action"].to_numpy(object)
    issue = np.where(action == "keep", False, predicted != given)
    issue = np.where(np.isin(action, ["relabel", "drop"]), True, issue)
    ids = scores["path"] if "path" in scores.columns else scores["sample_id"]
    table = pd.DataFrame({
        "id_or_path": ids.astype(str).to_numpy(), "given_label": names[given], "predicted_label": names[predicted],
        "label_score": label_score, "is_label_issue": issue.astype(bool),
        "label": names[effective["label"].to_numpy(np.int64)], "action": action,
        "csl": scores["csl"].to_numpy(np.float64), "csl_rank": rank,
    }, index=scores.index)
    return table[ISSUE_COLUMNS]


def fiftyone_fields(table: pd.DataFrame) -> dict[str, dict[str, object]]:
    """``{field: {id_or_path: value}}`` from :func:`label_issues` (for ``dataset.set_values(field, values,
    key_field="filepath")``); plain JSON types."""
    keys = table["id_or_path"].tolist()
    return {column: dict(zip(keys, table[column].tolist())) for column in table.columns if column != "id_or_path"}


def export_interop(run_path: str | Path, out_dir: str | Path, *, label_issue_table: bool = True,
                   fiftyone: bool = False, arrays: bool = False) -> list[Path]:
    """Write the chosen files of ``run_path`` into ``out_dir``; returns the paths written."""
    store = RunStore(run_path)
    out = Path(out_dir)
    refuse_run_folder(out)
    written: list[Path] = []
    if label_issue_table or fiftyone:
        scores = store.scores()
        labels = scores["label"].to_numpy(np.int64)
        table = label_issues(scores, DecisionLog(store.path).effective(len(scores), labels), store.classes)
        if label_issue_table:
            atomic_write_bytes(out / ISSUES_NAME, csv_safe(table).to_csv(index=False, float_format="%.6g").encode())
            written.append(out / ISSUES_NAME)
        if fiftyone:
            atomic_write_bytes(out / FIFTYONE_NAME, json.dumps(fiftyone_fields(table)).encode())
            written.append(out / FIFTYONE_NAME)
    if arrays:
        written += export_arrays(store, out)
    return written


def export_arrays(store: RunStore, out_dir: str | Path) -> list[Path]:
    """The run's raw data as ``import`` reads it: ``arrays/<field>.npy`` ``(samples, finished epochs)``,
    ``probabilities.npy``, ``embeddings.npy`` and ``images.npy`` where the run has them, ``classes.txt`` and
    ``samples.csv`` (``path`` or ``sample_id``, ``label`` as class names, plus ``true_label`` where known)."""
    from .duplicates import run_images

    out = Path(out_dir)
    refuse_run_folder(out)
    (out / ARRAYS).mkdir(parents=True, exist_ok=True)
    written = []
    for name, values in store.arrays().items():
        atomic_save_npy(out / array_name(name), np.ascontiguousarray(values))
        written.append(out / array_name(name))
    extras = {PROBABILITIES: store.probabilities(), IMAGES: run_images(store)}
    if (store.path / EMBEDDINGS).is_file():
        extras[EMBEDDINGS] = np.load(store.path / EMBEDDINGS, allow_pickle=False)
    for file, values in extras.items():
        if values is not None:
            atomic_save_npy(out / file, np.ascontiguousarray(values))
            written.append(out / file)
    samples = store.samples()
    names = np.asarray(store.classes, dtype=object)
    key = "path" if "path" in samples.columns else "sample_id"
    table = pd.DataFrame({key: samples[key].astype(str), "label": names[samples["label"].to_numpy(np.int64)]})
    if "true_label" in samples.columns:
        table["true_label"] = names[samples["true_label"].to_numpy(np.int64)]
    atomic_write_csv(out / SAMPLES, table)
    atomic_write_bytes(out / CLASSES_TXT, ("\n".join(store.classes) + "\n").encode())
    return written + [out / SAMPLES, out / CLASSES_TXT]


def exported_inputs(folder: str | Path) -> dict:
    """:func:`import_run`'s inputs from a folder :func:`export_arrays` wrote (the files it holds, its class
    names and its layout), so that the folder is read where it is written."""
    folder = Path(folder)
    if not (folder / SAMPLES).is_file():
        raise InputError(f"{folder} has no {SAMPLES}; --from takes a folder written by `export --format arrays`")
    files = {"samples_file": folder / SAMPLES, "losses_file": folder / array_name("loss"),
             "probabilities_file": folder / PROBABILITIES, "images_file": folder / IMAGES,
             "embeddings_file": folder / EMBEDDINGS}
    inputs: dict = {key: file for key, file in files.items() if file.is_file()}
    inputs["array_files"] = {f: folder / array_name(f) for f in IMPORT_FIELDS
                             if f != "loss" and (folder / array_name(f)).is_file()}
    if (folder / CLASSES_TXT).is_file():
        inputs["classes"] = [c for c in (folder / CLASSES_TXT).read_text().splitlines() if c]
    inputs["layout"] = "samples-epochs"   # as export_arrays writes every array
    return inputs


# ---------------------------------------------------------------- in

def read_matrix(file: str | Path) -> np.ndarray:
    """A numeric 2-D or 3-D array from ``.npy`` (never unpickled), or a 2-D one from ``.csv``/``.parquet``:
    either wide (one column per epoch, rows in sample order) or long (columns ``index, epoch, value``)."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    suffix = file.suffix.lower()
    if suffix == ".npy":
        array = load_npy(file)
    elif suffix in (".csv", ".parquet"):
        frame = pd.read_csv(file) if suffix == ".csv" else pd.read_parquet(file)
        array = long_to_wide(frame, file) if {"index", "epoch"} <= set(frame.columns) else frame.to_numpy()
    else:
        raise InputError(f"{file}: unknown format {suffix!r}; use .npy, .csv or .parquet")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{file}: expected numbers, found {array.dtype} values")
    return array


def per_sample(array: np.ndarray, n: int, file: Path, what: str, *, epochs: int | None = None,
               layout: str | None = None) -> np.ndarray:
    """``array`` as ``(n, epochs)`` (rows = samples); an ``(epochs, n)`` array is transposed, a square one is
    read as ``layout`` says (refused without). The error names both shapes and the files they come from."""
    if array.ndim == 2 and array.shape == (n, n) and epochs in (None, n):
        return check_square(array, n, file, layout)
    if array.ndim == 2 and array.shape[0] == n and (epochs is None or array.shape[1] == epochs):
        return array
    if array.ndim == 2 and array.shape[1] == n and (epochs is None or array.shape[0] == epochs):
        return array.T
    expected = f"({n}, {epochs if epochs is not None else 'epochs'})"
    raise InputError(f"{file}: {what} has shape {array.shape}, but {expected} is needed (samples x epochs, or "
                     "transposed) to match the sample table and the losses")


def import_run(out: str | Path, *, samples_file: str | Path | None = None, losses_file: str | Path | None = None,
               probabilities_file: str | Path | None = None, array_files: Mapping[str, str | Path] | None = None,
               images_file: str | Path | None = None, embeddings_file: str | Path | None = None,
               root: str | Path | None = None, classes: Sequence[str] | None = None,
               source: str = "import", model: str = "external", layout: str | None = None,
               from_dir: str | Path | None = None) -> RunStore:
    """Build a run folder ``out`` from another framework's per-epoch losses.

    Parameters
    ----------
    from_dir:
        A folder ``export --format arrays`` wrote (:func:`exported_inputs`): its files, class names and
        layout are the defaults; the other arguments given replace them (``array_files`` adds to its arrays).
    samples_file:
        CSV with a label column ``label`` and a ``path`` (also ``filepath``, ``filename``, ``image``;
        relative paths are taken from ``root`` or the CSV's folder) or a ``sample_id`` (or ``id``) column;
        labels are class names or integers. An optional ``true_label`` column adds ground truth.
    losses_file:
        The per-sample loss of every epoch: ``(samples, epochs)`` or ``(epochs, samples)`` (.npy, .csv,
        .parquet), or a long table ``index, epoch, loss``. Rows follow the sample table's order.
    probabilities_file:
        Softmax probabilities: ``(samples, classes)`` (their mean over training: the suggested label) or
        per epoch ``(samples, epochs, classes)`` / ``(epochs, samples, classes)``, from which correctness,
        margin and the probabilities of the given and top class are derived each epoch.
    array_files:
        Other per-epoch arrays by field (``correct``, ``margin``, ``p_given``, ``p_max``, ``eval_loss``), as
        ``export --format arrays`` writes them.
    images_file, embeddings_file:
        ``(samples, H, W[, C])`` uint8 images for the dashboard, and ``(samples, D)`` features.
    classes:
        Class names in label order; default the sorted names (or ``0..K-1`` for integer labels).
    layout:
        ``"samples-epochs"`` or ``"epochs-samples"``: how to read a square loss array (as many epochs as
        samples), which is otherwise refused as ambiguous.

    Every input is checked as a training's data is, before anything is written: losses finite and >= 0,
    correctness 0/1, probabilities in [0, 1], each path or id once, class names distinct and plain.
    """
    if from_dir is not None:
        given = {"samples_file": samples_file, "losses_file": losses_file, "probabilities_file": probabilities_file,
                 "images_file": images_file, "embeddings_file": embeddings_file, "classes": classes, "layout": layout}
        inputs = exported_inputs(from_dir)
        inputs.update({key: value for key, value in given.items() if value is not None})
        inputs["array_files"] = {**inputs["array_files"], **(array_files or {})}
        return import_run(out, root=root, source=source, model=model, **inputs)
    if samples_file is None or losses_file is None:
        raise InputError("import needs --samples and --losses (or --from an exported folder)")
    samples_file = Path(samples_file)
    losses_file = Path(losses_file)
    table = _read_sample_csv(samples_file)
    n = len(table)
    loss = per_sample(read_matrix(losses_file), n, losses_file, "the loss array", layout=layout)
    epochs = loss.shape[1]
    if epochs == 0:
        raise InputError(f"{losses_file}: no epochs")
    loss = check_values("loss", loss, losses_file)
    probabilities = read_matrix(probabilities_file) if probabilities_file is not None else None
    if probabilities is not None:
        check_probabilities(probabilities, probabilities_file)
    num_classes = probabilities.shape[-1] if probabilities is not None else None
    labels, names = _labels(table, samples_file, classes, num_classes, "label")
    if probabilities is not None and probabilities.shape[-1] != len(names):
        raise InputError(f"{probabilities_file}: {probabilities.shape[-1]} classes in shape {probabilities.shape}, but "
                         f"{samples_file} has {len(names)} classes")
    truth = _labels(table, samples_file, names, None, "true_label")[0] if "true_label" in table.columns else None
    fields = {"loss": loss}
    mean_probabilities = None
    if probabilities is not None:
        if probabilities.ndim == 2:
            if probabilities.shape[0] != n:
                raise InputError(f"{probabilities_file}: shape {probabilities.shape} has {probabilities.shape[0]} rows "
                                 f"but {samples_file} lists {n} samples")
            mean_probabilities = probabilities.astype(np.float32)
        elif probabilities.ndim == 3:
            per_epoch = _per_sample_epoch(probabilities, n, epochs, probabilities_file, losses_file)
            fields.update(fields_from_probabilities(per_epoch, labels))
            mean_probabilities = per_epoch.mean(axis=1).astype(np.float32)
        else:
            raise InputError(f"{probabilities_file}: shape {probabilities.shape}; expected (samples, classes) or "
                             "(samples, epochs, classes)")
    for name, file in (array_files or {}).items():
        if name not in IMPORT_FIELDS or name == "loss":
            known = ", ".join(f for f in IMPORT_FIELDS if f != "loss")
            raise InputError(f"unknown per-epoch array {name!r}; known: {known}")
        file = Path(file)
        values = per_sample(read_matrix(file), n, file, f"the {name} array", epochs=epochs, layout=layout)
        if name != "correct" and values.shape != loss.shape:
            raise InputError(f"{file}: shape {values.shape} differs from the losses' {loss.shape} in {losses_file}")
        fields[name] = check_values(name, values, file)
    images = load_npy(Path(images_file)) if images_file is not None else None
    embeddings = check_embeddings(load_npy(Path(embeddings_file)), n, embeddings_file) if embeddings_file else None
    if "path" in table.columns:
        base = Path(root) if root is not None else samples_file.parent
        paths = [str(p if Path(p).is_absolute() else base / p) for p in table["path"]]
        check_unique(pd.Series([os.path.normpath(os.path.abspath(p)) for p in paths]), samples_file, "path")
        samples = sample_table(labels, names, paths=paths, true_labels=truth)
    else:
        samples = sample_table(labels, names, ids=table["sample_id"].tolist(), true_labels=truth)
    writer = RunWriter(out, classes=names, samples=samples, images=images, epochs=epochs, source=source,
                       model=model, fields=tuple(f for f in IMPORT_FIELDS if f in fields))
    try:
        for epoch in range(epochs):
            writer.write_epoch({name: values[:, epoch] for name, values in fields.items()},
                               probabilities=mean_probabilities if epoch == epochs - 1 else None, seconds=0.0)
        return writer.finish(embeddings=embeddings)
    finally:
        writer.close()


def _read_sample_csv(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    table = pd.read_csv(file, dtype=str, keep_default_na=False)
    table = table.apply(csv_unsafe)  # the cells `export` neutralised against spreadsheet formulas, as they were
    table.columns = [c.strip().lower() for c in table.columns]
    if "label" not in table.columns:
        raise InputError(f"{file}: no 'label' column (found {list(table.columns)})")
    path = next((c for c in PATH_COLUMNS if c in table.columns), None)
    ident = next((c for c in ID_COLUMNS if c in table.columns), None)
    if path is None and ident is None:
        raise InputError(f"{file}: needs a path column ({', '.join(PATH_COLUMNS)}) or an id column "
                         f"({', '.join(ID_COLUMNS)}); found {list(table.columns)}")
    if path is not None and path != "path":
        table = table.rename(columns={path: "path"})
    if path is None and ident != "sample_id":
        table = table.rename(columns={ident: "sample_id"})
    if len(table) == 0:
        raise InputError(f"{file}: no rows")
    check_unique(table["path" if "path" in table.columns else "sample_id"].str.strip(), file,
                 "path" if "path" in table.columns else "sample_id")
    return table


def _labels(table: pd.DataFrame, file: Path, classes: Sequence[str] | None, num_classes: int | None,
            column: str) -> tuple[np.ndarray, list[str]]:
    values = table[column].str.strip().map(lambda v: unicodedata.normalize("NFC", v))   # as check_class_names
    empty = np.flatnonzero(values.to_numpy() == "")
    if len(empty):
        raise InputError(f"{file}, line {empty[0] + 2}: empty {column}")
    numeric = values.str.fullmatch(r"-?\d+")
    if classes is not None:
        names = check_class_names(classes, f"{file}: the given classes")
        lookup = {name: i for i, name in enumerate(names)}
        if values.isin(lookup).all():
            return values.map(lookup).to_numpy(np.int64), names
        if numeric.all():
            return _in_range(values.astype(np.int64).to_numpy(), len(names), file, column), names
        bad = int(np.flatnonzero(~values.isin(lookup).to_numpy())[0])
        raise InputError(f"{file}, line {bad + 2}: {column} {values.iloc[bad]!r} is not one of the classes {names}")
    if numeric.all():
        labels = values.astype(np.int64).to_numpy()
        k = max(int(labels.max()) + 1, num_classes or 0)
        return _in_range(labels, k, file, column), check_class_names([str(i) for i in range(k)], str(file))
    if numeric.any():
        line = int(np.flatnonzero(numeric.to_numpy())[0]) + 2
        raise InputError(f"{file}, line {line}: {column} {values.iloc[line - 2]!r} is an integer but others are "
                         "class names; use one kind")
    names = check_class_names(sorted(values.unique()), f"{file}: labels")
    lookup = {name: i for i, name in enumerate(names)}
    return values.map(lookup).to_numpy(np.int64), names


def _in_range(labels: np.ndarray, k: int, file: Path, column: str) -> np.ndarray:
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if len(bad):
        raise InputError(f"{file}, line {bad[0] + 2}: {column} {labels[bad[0]]} is outside 0..{k - 1}")
    return labels


def _per_sample_epoch(probabilities: np.ndarray, n: int, epochs: int, file, losses_file) -> np.ndarray:
    if probabilities.shape[:2] == (n, epochs):
        return probabilities
    if probabilities.shape[:2] == (epochs, n):
        return probabilities.transpose(1, 0, 2)
    raise InputError(f"{file}: per-epoch probabilities of shape {probabilities.shape}, but the losses in {losses_file} "
                     f"are ({n}, {epochs}): expected ({n}, {epochs}, classes) or ({epochs}, {n}, classes)")


def fields_from_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-epoch correct, margin, p_given, p_max from ``(N, E, C)`` softmax probabilities and the ``(N,)``
    given labels, by the tracker's own formula (:func:`~csl_core.run.schema.epoch_fields`) with the
    log-probabilities as logits: their margin equals the logits' (softmax only shifts them), so AUM is exact."""
    import torch  # only an import with per-epoch probabilities needs it

    p = torch.from_numpy(np.require(probabilities, np.float64, ["W"]))     # a copy where read-only (no write)
    targets = torch.tensor(np.asarray(labels), dtype=torch.int64)[:, None].expand(p.shape[:2])
    with torch.no_grad():
        fields = epoch_fields(p.log(), targets, p)
    return {name: values.numpy() if name == "correct" else values.numpy().astype(np.float32)
            for name, values in fields.items()}
