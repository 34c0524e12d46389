"""Real label noise: train on a human-labelled column of a label file through the ordinary ``csv:``
source (a user's path, the user's recipe) and score every method against a trusted column.

The label file has a path column and several label columns, e.g. CIFAR-10N's ``clean_label,
aggre_label, worse_label, random_label1``. For each noisy column and seed the protocol writes a
``path,label`` CSV into the output folder, trains ``csv:<that file>:<image root>`` with the source's
recipe (optionally another number of epochs and no augmentation: the memorisation regime), keeps the
trusted label as the run's ground truth (so ``info`` and the Evaluate page show it too), and reports
every score's AUROC, AUPR and precision at the true noise count. Confident learning (K-fold, the same
recipe and epochs) and the cleaning retrains (drop / relabel the top of the default ranking, then
accuracy on a clean test file) are optional. Results: ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import csv
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..analysis.metrics import detection_metrics
from ..analysis.noise_rate import noise_count
from ..analysis.scores import SCORES, default_score, suspicion
from ..config import TrainConfig, training_set_for
from ..data import DataError, IndexedDataset, TrainingSet, load_csv
from ..engine.models import resolve_model_name
from ..engine.train import predict, resolve_device, train
from ..errors import InputError
from ..run.files import atomic_write_bytes, atomic_write_json
from ..run.layout import META
from ..run.store import RunError, RunStore
from .cleaning import CLEANINGS, cleaning_plans, recovered, retrain_cleanings, suggestion_accuracy
from .surgery import load_trained_model, select_rows


@dataclass
class RealNoiseConfig:
    """One real-noise plan: label file, columns, seeds and the training budgets to compare."""

    labels: str
    root: str | None = None
    columns: tuple[str, ...] = ("aggre_label",)
    truth: str = "clean_label"
    seeds: tuple[int, ...] = (1,)
    epochs: tuple[int, ...] = ()  # extra budgets, trained without augmentation (the memorisation regime)
    recipe: bool = True  # also the source's recipe as it is
    augment: bool | None = None
    model: str | None = None
    lr: float | None = None  # peak learning rate (None: the source's recipe)
    recipe_epochs: int | None = None  # epochs of the recipe's run (None: the source's recipe)
    batch_size: int | None = None  # (None: the source's recipe)
    subset: int | None = None
    test: str | None = None
    cleanlab: bool = False
    folds: int = 3
    clean: bool = False
    cleanings: tuple[str, ...] = CLEANINGS  # which plans --clean retrains on (the trusted run always)
    device: str = "auto"

    def __post_init__(self):
        unknown = [c for c in self.cleanings if c not in CLEANINGS]
        if unknown or not self.cleanings:
            raise InputError(f"cleanings {list(unknown) or '(none)'}: choose among {', '.join(CLEANINGS)}")


def read_label_columns(labels: str | Path, columns: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The path column and ``columns`` of a label file, as strings; a missing column is an error
    that lists the ones there are."""
    path = Path(labels)
    if not path.is_file():
        raise DataError(f"label file {labels!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        path_column = next((c for c in ("path", "filename", "file", "image") if c in header), None)
        missing = [c for c in columns if c not in header]
        if path_column is None or missing:
            raise DataError(f"{labels}: needs a path column and the label columns {', '.join(columns)}; "
                            f"found {', '.join(header) or 'no header'}")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        for column in (path_column, *columns):
            if not (row.get(column) or "").strip():
                raise DataError(f"{labels}, line {line}: empty {column!r}")
    return [r[path_column].strip() for r in rows], {c: [r[c].strip() for r in rows] for c in columns}


def write_column_csv(paths: list[str], labels: list[str], out: Path) -> Path:
    """A ``path,label`` file for one label column: what a user would hand to ``--data csv:``."""
    lines = ["path,label"] + [f"{_csv_field(p)},{_csv_field(label)}" for p, label in zip(paths, labels)]
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
    return out


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def with_truth(training_set: TrainingSet, truth_by_id: dict[str, str]) -> TrainingSet:
    """``training_set`` with the trusted labels as its ground truth (``true_label``, ``is_mislabeled``)."""
    index = {name: i for i, name in enumerate(training_set.classes)}
    samples = training_set.samples.copy()
    try:
        true = np.array([index[truth_by_id[sid]] for sid in samples["sample_id"].astype(str)], dtype=np.int64)
    except KeyError as e:
        raise DataError(f"the trusted column names {e} which is not a class of the noisy column "
                        f"({', '.join(training_set.classes)}) or a sample it lacks") from None
    samples["true_label"] = true
    samples["is_mislabeled"] = samples["label"].to_numpy() != true
    samples["is_duplicate"] = False
    samples["duplicate_of"] = -1
    return TrainingSet(spec=training_set.spec, source=training_set.source, samples=samples,
                       test=training_set.test)


class RealNoiseBenchmark:
    def __init__(self, config: RealNoiseConfig, out: str | Path, *, quiet: bool = False):
        if not config.columns:
            raise InputError("give at least one noisy label column")
        if config.model is not None:  # it names run folders that a rerun may replace: no path in it
            resolve_model_name(config.model, 32)
        self.config, self.out, self.quiet = config, Path(out), quiet
        self.device = resolve_device(config.device)
        self.paths, self.columns = read_label_columns(config.labels, [config.truth, *config.columns])
        self.truth_by_id = dict(zip(self.paths, self.columns[config.truth]))
        self._test = None

    def _log(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _spec(self, column: str) -> str:
        file = write_column_csv(self.paths, self.columns[column], self.out / "labels" / f"{column}.csv")
        root = self.config.root or str(Path(self.config.labels).resolve().parent)
        return f"csv:{file.resolve()}:{root}"

    def _train_config(self, column: str, seed: int, epochs: int | None) -> TrainConfig:
        c = self.config
        augment = c.augment if epochs is None else (False if c.augment is None else c.augment)
        epochs = c.recipe_epochs if epochs is None else epochs
        return TrainConfig.for_source(self._spec(column), epochs=epochs, seed=seed, augment=augment,
                                      model=c.model, lr=c.lr, batch_size=c.batch_size, subset=c.subset, device=c.device)

    def _test_source(self, classes: list[str]):
        if self.config.test is None:
            return None
        if self._test is None:
            self._test = load_csv(self.config.test, self.config.root, image_size=32)
        if self._test.classes != classes:
            raise DataError(f"{self.config.test}: its classes {self._test.classes} differ from the training "
                            f"labels' {classes}")
        return self._test

    def _training_set(self, config: TrainConfig) -> TrainingSet:
        ts = with_truth(training_set_for(config), self.truth_by_id)
        ts.test = self._test_source(ts.classes)
        return ts

    def _train(self, config: TrainConfig, training_set: TrainingSet, name: str):
        """Train into ``runs/<name>``; a completed run with the same settings is reused as it is (a field
        added to :class:`TrainConfig` since the run was made counts as its default)."""
        path = self.out / "runs" / name
        if (path / META).is_file():
            try:
                store = RunStore(path)
                stored = asdict(TrainConfig.from_run(store.meta["config"], path / META))
                if store.meta.get("completed") and stored == asdict(config):
                    return store, store.report().get("test_accuracy")
            except (RunError, ValueError, KeyError, OSError):
                pass
            shutil.rmtree(path)
        result = train(config, path, training_set=training_set)
        return result.run, result.test_accuracy

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        budgets: list[int | None] = [None] * self.config.recipe + list(self.config.epochs)
        if not budgets:
            raise InputError("nothing to train: give --epochs budgets, or keep the recipe")
        cells = []
        for column in self.config.columns:
            for epochs in budgets:
                for seed in self.config.seeds:
                    cells.append(self._cell(column, epochs, seed))
                    self._write(cells)
        return self._write(cells)

    def _cell(self, column: str, epochs: int | None, seed: int) -> dict:
        config = self._train_config(column, seed, epochs)
        # the name tells the settings a bench varies apart, so two plans sharing an --out never replace
        # each other's runs
        variant = "".join([f"-{self.config.model}" if self.config.model else "",
                           f"-lr{config.lr:g}" if self.config.lr is not None else "",
                           f"-b{config.batch_size}" if self.config.batch_size is not None else ""])
        name = f"{column}-e{config.epochs}{'' if config.augment is not False else '-noaug'}{variant}-seed{seed}"
        self._log(f"{name}: training {config.model} on {config.data}, {config.epochs} epochs")
        training_set = self._training_set(config)
        began = time.perf_counter()
        store, test_accuracy = self._train(config, training_set, name)
        report = store.report()
        train_seconds = sum(e["seconds"] for e in report.get("epochs", []))
        scores = store.scores()
        truth = scores["is_mislabeled"].to_numpy(bool)
        estimate = noise_count(scores)
        methods = {m: {**detection_metrics(truth, suspicion(scores, m)), "seconds": train_seconds}
                   for m in SCORES if m in scores.columns and SCORES[m].benchmarked}
        cell = {"column": column, "seed": seed, "epochs": config.epochs, "augment": config.augment,
                "model": store.meta["model"], "lr": config.lr, "batch_size": config.batch_size,
                "run": str(store.path), "num_samples": len(truth),
                "positives": int(truth.sum()), "estimated_noise": estimate.count,
                "train_accuracy": report["epochs"][-1]["accuracy"], "test_accuracy": test_accuracy,
                "training_seconds": train_seconds, "wall_seconds": time.perf_counter() - began,
                "ranking": default_score(scores), "methods": methods,
                "suggestion": suggestion_accuracy(scores, scores["true_label"].to_numpy(np.int64))}
        if self.config.cleanlab:
            cell["methods"]["cleanlab"] = self._cleanlab(config, training_set, name)
        if self.config.clean and test_accuracy is not None:
            cell["cleaning"] = self._clean(config, training_set, scores, cell, name, column, epochs)
        return cell

    def _cleanlab(self, config: TrainConfig, training_set: TrainingSet, name: str) -> dict:
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import StratifiedKFold

        labels = training_set.labels
        n = len(labels)
        pred_probs = np.zeros((n, len(training_set.classes)))
        folds = StratifiedKFold(n_splits=self.config.folds, shuffle=True, random_state=config.seed)
        fold_seconds = 0.0
        for fold, (fit_rows, held_out) in enumerate(folds.split(np.zeros(n), labels)):
            self._log(f"{name}: cleanlab fold {fold + 1}/{self.config.folds}")
            fold_config = TrainConfig(**{**asdict(config), "compute_embeddings": False})
            store, _ = self._train(fold_config, select_rows(training_set, fit_rows, keep_test=False),
                                   f"{name}-cleanlab-fold{fold}")
            fold_seconds += sum(e["seconds"] for e in store.report().get("epochs", []))
            began = time.perf_counter()
            model, preprocess = load_trained_model(store, self.device)
            held = IndexedDataset(training_set.source.images, training_set.image_index[held_out], labels[held_out])
            pred_probs[held_out] = torch.from_numpy(predict(model, held, preprocess, self.device)).double().softmax(1)
            fold_seconds += time.perf_counter() - began
        score = 1.0 - get_label_quality_scores(labels, pred_probs, method="self_confidence")
        truth = training_set.samples["is_mislabeled"].to_numpy(bool)
        # training seconds as the fold runs recorded them (so a rerun that reuses them reports the same
        # cost), plus the out-of-fold prediction
        return {**detection_metrics(truth, score), "seconds": fold_seconds}

    def _clean(self, config: TrainConfig, training_set: TrainingSet, scores, cell: dict, name: str,
               column: str, epochs: int | None) -> dict:
        """Retrain after the run's suggested cleaning (relabel where the suggestion is sure, drop where it is
        not, the budget being the run's count of wrong labels) and after dropping the same suspects; once on
        the trusted labels (shared by every noisy column: the same images, the same recipe)."""
        plain = TrainConfig(**{**asdict(config), "compute_embeddings": False})

        def retrain(cleaned: TrainingSet, run_name: str) -> float | None:
            return self._train(plain, cleaned, run_name)[1]

        # the trusted run first: every recovered share needs it, and it is shared by every noisy column
        truth_config = TrainConfig(**{**asdict(self._train_config(self.config.truth, config.seed, epochs)),
                                      "compute_embeddings": False})
        truth_name = self.config.truth + name[len(column):]
        self._log(f"{truth_name}: training on the trusted labels")
        trusted = self._train(truth_config, self._training_set(truth_config), truth_name)[1]
        plans = {c: plan for c, plan in cleaning_plans(scores, cell["estimated_noise"]).items()
                 if c in self.config.cleanings}
        out = {"noisy": cell["test_accuracy"], "trusted": trusted,
               **retrain_cleanings(retrain, training_set, plans, name, log=self._log)}
        for cleaning in plans:
            out[cleaning]["recovered"] = recovered(out[cleaning]["test_accuracy"], out["noisy"], out["trusted"])
        return out

    def _write(self, cells: list[dict]) -> dict:
        results = {"config": asdict(self.config), "cells": cells, "finished": time.time()}
        atomic_write_json(self.out / "results.json", results)
        atomic_write_bytes(self.out / "results.md", render_real_noise(results).encode())
        return results


def summarise_seeds(cells: list[dict]) -> list[dict]:
    """One row per (column, epochs, augmentation, model, lr) and method over that setting's seeds: mean,
    min and max AUROC, mean AUPR and precision at the true count, mean seconds; best mean AUROC first
    within each setting."""
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        key = (cell["column"], cell["epochs"], cell["augment"] is not False, cell["model"], cell.get("lr"))
        groups.setdefault(key, []).append(cell)
    rows = []
    for (column, epochs, augment, model, lr), group in groups.items():
        methods = sorted({m for c in group for m in c["methods"]})
        setting = []
        for method in methods:
            values = [c["methods"][method] for c in group if method in c["methods"]]
            auroc = [v["auroc"] for v in values]
            setting.append({"column": column, "epochs": epochs, "augment": augment, "model": model, "lr": lr,
                            "method": method, "seeds": sorted(c["seed"] for c in group if method in c["methods"]),
                            "auroc": float(np.mean(auroc)), "auroc_min": min(auroc), "auroc_max": max(auroc),
                            "aupr": float(np.mean([v["aupr"] for v in values])),
                            "precision_at_k": float(np.mean([v["precision_at_k"] for v in values])),
                            "seconds": float(np.mean([v["seconds"] for v in values]))})
        rows += sorted(setting, key=lambda r: -r["auroc"])
    return rows


def render_suggestion(cell: dict) -> list[str]:
    """The suggestion's accuracy, the count against the truth and, where retrained, the cleaning table."""
    lines = []
    s = cell.get("suggestion")
    if s:
        high = f"{s['high']:.3f}" if s["high"] is not None else "n/a"
        top = f"{s['top']:.3f}" if s["top"] is not None else "n/a"
        every = f"{s['all']:.3f}" if s["all"] is not None else "n/a"
        lines += ["", f"Suggested label right on the truly mislabeled samples: {top} of the {s['top_wrong']} in "
                  f"the top {s['top_share']:.0%} of the queue, {every} of all; {high} of those whose confidence "
                  f"reaches {s['high_at']:.2f} ({s['high_coverage']:.0%} of them). Count of wrong labels "
                  f"{cell['estimated_noise']} against {cell['positives']} true "
                  f"({cell['estimated_noise'] / max(1, cell['positives']):.2f}x)."]
    c = cell.get("cleaning")
    if c:
        lines += ["", f"Cleaning, retrained with the same recipe: clean test accuracy on the noisy labels "
                  f"{c['noisy']:.4f}, on the trusted labels {c['trusted']:.4f}.", "",
                  "| cleaning | budget | relabelled (right) | dropped (wrong) | wrong labels left | test accuracy "
                  "| recovered |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name in CLEANINGS:
            if name in c:
                r = c[name]
                share = f"{r['recovered']:.2f}" if r.get("recovered") is not None else "n/a"
                accuracy = f"{r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else "n/a"
                lines.append(f"| {name} | {r['budget']} | {r['relabel']} ({r['relabel_right']}) | {r['drop']} "
                             f"({r['drop_wrong']}) | {r['wrong_after']} of {r['wrong_before']} | {accuracy} | "
                             f"{share} |")
    return lines


def render_real_noise(results: dict) -> str:
    """The tables a person reads: per column, budget and seed, every score's AUROC / AUPR / P@k."""
    config = results["config"]
    lines = [f"# Real label noise: {config['labels']}", "",
             f"Trusted column `{config['truth']}`; positives = samples whose noisy label differs from it. "
             "Each cell trains the noisy column through the ordinary `csv:` source with the source's recipe "
             "(other epoch budgets without augmentation). AUROC / AUPR / precision at the true noise count.", ""]
    for cell in results["cells"]:
        augment = "" if cell["augment"] is not False else ", no augmentation"
        share = cell["positives"] / cell["num_samples"]
        test = f"; test accuracy {cell['test_accuracy']:.4f}" if cell.get("test_accuracy") is not None else ""
        lines += [f"## {cell['column']}, {cell['epochs']} epochs{augment}, seed {cell['seed']}", "",
                  f"{cell['num_samples']} samples, {cell['positives']} mislabeled ({share:.1%}); model "
                  f"{cell['model']}; training accuracy (last epoch) {cell['train_accuracy']:.3f}; training "
                  f"{cell['training_seconds']:.0f} s; estimated noise {cell['estimated_noise']}; default ranking "
                  f"`{cell['ranking']}`{test}", "",
                  "| score | AUROC | AUPR | P@k | seconds |", "| --- | --- | --- | --- | --- |"]
        for name, m in sorted(cell["methods"].items(), key=lambda kv: -kv[1]["auroc"]):
            label = SCORES[name].label if name in SCORES else "confident learning (cleanlab, K-fold)"
            lines.append(f"| {label} | {m['auroc']:.4f} | {m['aupr']:.4f} | {m['precision_at_k']:.4f} | "
                         f"{m['seconds']:.0f} |")
        lines += render_suggestion(cell)
        lines.append("")
        lines.append("")
    summary = summarise_seeds(results["cells"])
    if any(len(r["seeds"]) > 1 for r in summary):
        lines += ["## Over seeds", "", "Mean AUROC (lowest - highest seed), mean AUPR and precision at the true "
                  "count, mean training seconds.", "",
                  "| column | epochs | score | seeds | AUROC | range | AUPR | P@k | seconds |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in summary:
            label = SCORES[r["method"]].label if r["method"] in SCORES else "confident learning (cleanlab, K-fold)"
            epochs = f"{r['epochs']}{'' if r['augment'] else ' no aug'}"
            lines.append(f"| {r['column']} | {epochs} | {label} | {len(r['seeds'])} | {r['auroc']:.4f} | "
                         f"{r['auroc_min']:.4f} - {r['auroc_max']:.4f} | {r['aupr']:.4f} | "
                         f"{r['precision_at_k']:.4f} | {r['seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)
