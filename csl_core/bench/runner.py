"""Running the benchmark: one task at a time, each saved as ``cells/<task>.json`` the moment it finishes."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..analysis.metrics import detection_metrics, top_k
from ..analysis.scores import default_score, suspicion
from ..config import TrainConfig
from ..data import IndexedDataset, TrainingSet, build_training_set
from ..engine.train import predict, resolve_device, train
from ..errors import InputError
from ..progress import progress_bar
from ..run.files import atomic_write_bytes, atomic_write_json, lock_file
from ..run.layout import META
from ..run.store import RunError, RunLockedError, RunStore
from .curvature import CurvatureRecorder
from .planning import (
    CELL_FORMAT,
    EVAL_PASS_WEIGHT,
    RUN_METHODS,
    WORKER_POLL_SECONDS,
    BenchConfig,
    Setting,
    Task,
    plan,
    training_size,
)
from .report import render_markdown, render_roc_html, summarise, thin_roc
from .surgery import load_trained_model, relabel, select_rows

# ---------------------------------------------------------------- running

class _Progress:
    """Engine callbacks that advance the plan-wide bar as batches and epochs finish."""

    def __init__(self, bar, samples: int, *, eval_pass: bool, on_epoch: Callable[[int], None] | None = None):
        self.bar, self.samples, self.eval_pass = bar, samples, eval_pass
        self.per_batch = 0.0
        self.hook = on_epoch

    def on_start(self, info: dict) -> None:
        self.per_batch = self.samples / max(1, info["batches"])

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        self.bar.update(self.per_batch)

    def on_epoch(self, epoch: int, summary: dict) -> None:
        if self.eval_pass:
            self.bar.update(EVAL_PASS_WEIGHT * self.samples)
        if self.hook is not None:
            self.hook(epoch)

    def should_stop(self) -> bool:
        return False


class Benchmark:
    """Runs the tasks of a plan into ``out`` and writes the results."""

    def __init__(self, config: BenchConfig, out: str | Path, *, command: str = "", quiet: bool = False,
                 report_only: bool = False):
        config.validate()
        self.config = config
        self.out = Path(out)
        self.command = command
        self.quiet = quiet
        self.report_only = report_only
        self.device = resolve_device(config.device)
        self.num_samples = training_size(config)
        self.settings, self.tasks = plan(config, self.num_samples)
        self._sets: dict[tuple, TrainingSet] = {}
        self._confusable: list[int] | None = None

    # ------------------------------------------------------------ cells on disk
    def _cell_path(self, key: str) -> Path:
        return self.out / "cells" / (key.replace("/", "__") + ".json")

    def _cell_settings(self, task: Task) -> dict:
        c = self.config
        return {"format": CELL_FORMAT, "data": c.data, "subset": c.subset, "epochs": c.epochs, "model": c.model,
                "noise_kind": c.noise_kind,
                "seed": task.seed, "task": task.kind, "setting": asdict(task.setting) if task.setting else None,
                "baselines": c.baselines if task.kind == "detect" else None,
                "folds": c.folds if task.kind == "cleanlab" else None}

    def load_cell(self, task: Task) -> dict | None:
        """The saved result of ``task``, or ``None`` when it has not finished; ``ValueError`` when
        the folder holds a result for other settings (results of two plans never mix).
        """
        path = self._cell_path(task.key)
        if not path.is_file():
            return None
        with open(path) as f:
            cell = json.load(f)
        if cell.get("settings") != self._cell_settings(task):
            raise InputError(f"{path} holds a result for other settings ({cell.get('settings')}); "
                             "use another --out, or delete that folder to start over")
        return cell["result"]

    def _save_cell(self, task: Task, result: dict) -> None:
        atomic_write_json(self._cell_path(task.key), {"settings": self._cell_settings(task), "result": result})

    # ------------------------------------------------------------ the plan
    def run(self) -> dict:
        """Run every unfinished task (another process with the same command shares the work),
        then write ``results.json``, ``results.md`` and ``roc.html``; returns the results.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        done = {t.key: self.load_cell(t) for t in self.tasks}
        by_key = {t.key: t for t in self.tasks}
        total = sum(t.weight for t in self.tasks)
        finished_weight = sum(t.weight for t in self.tasks if done[t.key] is not None)
        interactive = sys.stderr.isatty()
        bar = progress_bar(total=total, initial=finished_weight, desc="benchmark", unit="sample-epoch",
                           unit_scale=True, disable=self.quiet, mininterval=0.5 if interactive else 30.0)
        try:
            pending = [] if self.report_only else [t for t in self.tasks if done[t.key] is None]
            while pending:
                waiting = []
                for task in pending:
                    done[task.key] = done[task.key] or self.load_cell(task)  # another worker may have done it
                    if done[task.key] is not None:
                        bar.update(task.weight)
                        continue
                    for d in task.depends:
                        done[d] = done[d] or self.load_cell(by_key[d])
                    if any(done[d] is None for d in task.depends):
                        waiting.append(task)
                        continue
                    with self._claim(task) as claimed:
                        if not claimed:
                            waiting.append(task)
                            continue
                        try:
                            done[task.key] = self._run_and_save(task, done, bar)
                        except RunLockedError:  # its run folder is being trained by a process without a claim
                            waiting.append(task)
                            continue
                        if not self.quiet:
                            finished = sum(v is not None for v in done.values())
                            bar.write(f"[{finished}/{len(self.tasks)}] {task.key}: "
                                      f"{done[task.key]['task_wall_seconds']:.0f}s")
                if waiting and len(waiting) == len(pending):
                    time.sleep(WORKER_POLL_SECONDS)  # everything left is in another worker's hands
                pending = waiting
        finally:
            bar.close()
        machine = {"platform": platform.platform(), "python": platform.python_version(),
                   "torch": torch.__version__, "csl_core": __version__, "device": str(self.device),
                   "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "load_average_at_start": load_start,
                   "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
        results = summarise(self.config, self.settings, self.tasks, done, num_samples=self.num_samples)
        results.update(command=self.command, machine=machine, finished=time.time(),
                       this_invocation_seconds=time.time() - started)
        atomic_write_json(self.out / "results.json", results)
        atomic_write_bytes(self.out / "results.md", render_markdown(results).encode())
        atomic_write_bytes(self.out / "roc.html", render_roc_html(results).encode())
        return results

    def _run_and_save(self, task: Task, done: dict, bar) -> dict:
        began = time.perf_counter()
        start_n = bar.n
        result = self._run_task(task, done, bar)
        # The bar's estimate of a task's weight is approximate; settle it at the task's end.
        bar.update(task.weight - (bar.n - start_n))
        result["task_wall_seconds"] = time.perf_counter() - began
        result["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self._save_cell(task, result)
        return result

    @contextmanager
    def _claim(self, task: Task):
        """Several workers may run the same command on one output folder: each task goes to one of them.

        Yields ``False`` when a live process holds the task; a claim left by a dead one is taken over.
        """
        path = self._cell_path(task.key).with_suffix(".claim")
        path.parent.mkdir(parents=True, exist_ok=True)
        with lock_file(path) as holder:
            yield holder is None

    def _run_task(self, task: Task, done: dict, bar) -> dict:
        if task.kind == "detect":
            return self._detect(task, bar)
        if task.kind == "cleanlab":
            return self._cleanlab(task, bar)
        if task.kind == "true-labels":
            return self._true_labels(task, bar)
        return self._clean(task, done[task.depends[0]], bar)

    # ------------------------------------------------------------ helpers
    def _train_config(self, seed: int, setting: Setting | None, *, eval_pass: bool = False,
                      embeddings: bool = False) -> TrainConfig:
        noise = setting.value if setting is not None and setting.kind == "noise" else 0.0
        pairs = int(setting.value) if setting is not None and setting.kind == "duplicates" else 0
        return TrainConfig(data=self.config.data, epochs=self.config.epochs, model=self.config.model, seed=seed,
                           eval_pass=eval_pass, inject_noise=noise, inject_duplicates=pairs,
                           noise_kind=self.config.noise_kind, noise_map=self._noise_map(),
                           subset=self.config.subset, device=self.config.device,
                           compute_embeddings=embeddings)

    def _noise_map(self) -> list[int] | None:
        """The class map of confusable noise, learnt once per plan from a short warm-up on the clean
        labels (every seed and level then flips towards the same confusions); None for other kinds."""
        if self.config.noise_kind != "confusable":
            return None
        if self._confusable is None:
            from ..data import confusable_map, load_source
            from ..engine.warmup import warmup_confusion

            source, _ = load_source(self.config.data)
            self._confusable = confusable_map(warmup_confusion(source, seed=0, device=self.device)).tolist()
        return self._confusable

    def _training_set(self, seed: int, setting: Setting) -> TrainingSet:
        key = (seed, setting)
        if key not in self._sets:
            cfg = self._train_config(seed, setting)
            self._sets.clear()  # one data set in memory at a time
            self._sets[key] = build_training_set(cfg.data, subset=cfg.subset, inject_noise=cfg.inject_noise,
                                                 inject_duplicates_pairs=cfg.inject_duplicates, seed=seed,
                                                 noise_kind=cfg.noise_kind, noise_map=cfg.noise_map)
        return self._sets[key]

    def _fresh_run_dir(self, *parts: str) -> Path:
        """A run folder for a task that starts over: what a kill left there is discarded."""
        path = self.out.joinpath("runs", *parts)
        if path.exists():
            shutil.rmtree(path)
        return path

    def _train(self, config: TrainConfig, training_set: TrainingSet, callbacks, *parts: str,
               resumable: bool = True):
        """Train into ``runs/<parts>``, continuing a run folder that a kill left half-finished."""
        path = self.out.joinpath("runs", *parts)
        if resumable and (path / META).is_file():
            try:
                stored = RunStore(path).meta["config"]
                if all(stored.get(k) == v for k, v in asdict(config).items() if k not in ("device", "num_workers")):
                    return train(config, path, resume=True, training_set=training_set, callbacks=callbacks)
            except (RunError, ValueError, KeyError, OSError):
                pass
        return train(config, self._fresh_run_dir(*parts), training_set=training_set, callbacks=callbacks)

    # ------------------------------------------------------------ tasks
    def _detect(self, task: Task, bar) -> dict:
        setting, seed = task.setting, task.seed
        name = f"{setting.name}-seed{seed}"
        training_set = self._training_set(seed, setting)
        curvature = (CurvatureRecorder(self.out / "runs" / name, training_set, self.device, seed)
                     if self.config.baselines == "all" else None)
        callbacks = _Progress(bar, self.num_samples, eval_pass=True,
                              on_epoch=curvature.record if curvature else None)
        # Curvature is recorded epoch by epoch in this process, so a run with it cannot be continued.
        result = self._train(self._train_config(seed, setting, eval_pass=True, embeddings=True), training_set,
                             callbacks, name,
                             resumable=curvature is None)
        store = result.run
        epochs = store.report()["epochs"]
        eval_seconds = sum(e.get("eval_seconds", 0.0) for e in epochs)
        train_seconds = sum(e["seconds"] for e in epochs) - eval_seconds
        began = time.perf_counter()
        scores = store.scores()
        scoring_seconds = time.perf_counter() - began
        truth = scores[setting.positive_column].to_numpy(bool)
        methods = {m: suspicion(scores, m) for m in RUN_METHODS if m in scores.columns}
        seconds = {m: train_seconds + scoring_seconds for m in methods}
        seconds["eval_csl"] += eval_seconds
        if curvature is not None:
            methods["curvature"] = curvature.result()
            seconds["curvature"] = train_seconds + curvature.seconds
        k = int(truth.sum())
        ranking = default_score(scores)  # what the cleaning retrains act on: the dashboard's default queue
        flagged = top_k(methods[ranking], k)
        suggested = scores["suggested_label"].to_numpy(np.int64)
        out = {"num_samples": len(truth), "positives": k, "model": store.meta["model"],
               "plain_training_seconds": train_seconds,
               "eval_pass_seconds": eval_seconds, "scoring_seconds": scoring_seconds,
               "test_accuracy": result.test_accuracy, "methods": {}, "roc": {},
               "ranking": ranking, "top_k": flagged.tolist(), "top_k_suggested_label": suggested[flagged].tolist()}
        if setting.kind == "noise":
            true_label = scores["true_label"].to_numpy(np.int64)
            out["suggested_label_correct_on_flagged_positives"] = float(
                np.mean((suggested[flagged] == true_label[flagged])[truth[flagged]])) if truth[flagged].any() else None
        for m, score in methods.items():
            out["methods"][m] = {**detection_metrics(truth, score), "seconds": seconds[m]}
            out["roc"][m] = thin_roc(truth, score)
        return out

    def _cleanlab(self, task: Task, bar) -> dict:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import StratifiedKFold

        setting, seed = task.setting, task.seed
        training_set = self._training_set(seed, setting)
        labels = training_set.labels
        n, num_classes = len(labels), len(training_set.classes)
        pred_probs = np.zeros((n, num_classes))
        folds = StratifiedKFold(n_splits=self.config.folds, shuffle=True, random_state=seed)
        train_seconds = predict_seconds = 0.0
        for fold, (fit_rows, held_out) in enumerate(folds.split(np.zeros(n), labels)):
            fit_set = select_rows(training_set, fit_rows, keep_test=False)
            result = self._train(self._train_config(seed, setting), fit_set,
                                 _Progress(bar, len(fit_rows), eval_pass=False),
                                 f"{setting.name}-seed{seed}-cleanlab", f"fold{fold}")
            train_seconds += sum(e["seconds"] for e in result.run.report()["epochs"])
            began = time.perf_counter()
            model, preprocess = load_trained_model(result.run, self.device)
            held_out_set = IndexedDataset(training_set.source.images, training_set.image_index[held_out],
                                          labels[held_out])
            logits = predict(model, held_out_set, preprocess, self.device)
            pred_probs[held_out] = torch.from_numpy(logits).double().softmax(1).numpy()
            predict_seconds += time.perf_counter() - began
        began = time.perf_counter()
        quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
        issues = find_label_issues(labels, pred_probs, n_jobs=1)
        cleanlab_seconds = time.perf_counter() - began
        truth = training_set.samples[setting.positive_column].to_numpy(bool)
        score = 1.0 - quality
        seconds = train_seconds + predict_seconds + cleanlab_seconds
        return {"num_samples": n, "positives": int(truth.sum()), "fold_training_seconds": train_seconds,
                "predict_seconds": predict_seconds, "cleanlab_seconds": cleanlab_seconds,
                "out_of_sample_accuracy": float((pred_probs.argmax(1) == training_set.samples["true_label"]
                                                 .to_numpy()).mean()),
                "find_label_issues": {"flagged": int(issues.sum()),
                                      "precision": float(truth[issues].mean()) if issues.any() else None,
                                      "recall": float(issues[truth].mean())},
                "methods": {"cleanlab": {**detection_metrics(truth, score), "seconds": seconds}},
                "roc": {"cleanlab": thin_roc(truth, score)}}

    def _clean(self, task: Task, detect: dict, bar) -> dict:
        setting, seed = task.setting, task.seed
        training_set = self._training_set(seed, setting)
        flagged = np.asarray(detect["top_k"], dtype=np.int64)
        if task.kind == "clean-drop":
            cleaned = select_rows(training_set, np.setdiff1d(np.arange(len(training_set)), flagged))
        else:
            cleaned = relabel(training_set, flagged, np.asarray(detect["top_k_suggested_label"]))
        result = self._train(self._train_config(seed, setting), cleaned,
                             _Progress(bar, len(cleaned), eval_pass=False), f"{setting.name}-seed{seed}-{task.kind}")
        remaining = int(cleaned.samples["is_mislabeled"].sum())
        return {"test_accuracy": result.test_accuracy, "num_samples": len(cleaned), "k": len(flagged),
                "mislabeled_left": remaining,
                "training_seconds": sum(e["seconds"] for e in result.run.report()["epochs"])}

    def _true_labels(self, task: Task, bar) -> dict:
        config = self._train_config(task.seed, None)
        training_set = build_training_set(config.data, subset=config.subset, inject_noise=0.0,
                                          inject_duplicates_pairs=0, seed=task.seed)
        result = self._train(config, training_set, _Progress(bar, self.num_samples, eval_pass=False),
                             f"true-labels-seed{task.seed}")
        return {"test_accuracy": result.test_accuracy,
                "training_seconds": sum(e["seconds"] for e in result.run.report()["epochs"])}


def run_benchmark(config: BenchConfig, out: str | Path, *, command: str = "", quiet: bool = False,
                  report_only: bool = False) -> dict:
    """Run (or resume) the plan of ``config`` into ``out``; returns what ``results.json`` holds.

    With ``report_only`` nothing is trained: the results are written from the cells finished so far
    (e.g. while another process is still working through the plan).
    """
    return Benchmark(config, out, command=command, quiet=quiet, report_only=report_only).run()
