"""Summarising finished cells: mean and spread per method, the Markdown table, the ROC page."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from ..analysis.metrics import METRICS, roc_curve
from .planning import LOWER_IS_BETTER, METHOD_NAMES, METRIC_NAMES, ROC_POINTS, BenchConfig, Setting, Task

# ---------------------------------------------------------------- summarising

def thin_roc(truth: np.ndarray, score: np.ndarray, points: int = ROC_POINTS) -> dict:
    fpr, tpr = roc_curve(truth, score)
    if len(fpr) > points:
        keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, points).round().astype(int), len(fpr) - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}


def _stat(values: Sequence[float | None]) -> dict:
    clean = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return {"mean": None, "std": None, "values": list(values)}
    return {"mean": float(np.mean(clean)), "std": float(np.std(clean)), "values": list(values)}


def summarise(config: BenchConfig, settings: list[Setting], tasks: list[Task], done: dict[str, dict], *,
              num_samples: int) -> dict:
    """Mean and std over seeds of every metric, wall time and cleaning result; JSON-ready."""
    by_key = {t.key: t for t in tasks}
    summary = {}
    for s in settings:
        seeds = [seed for seed in config.seeds if done.get(f"{s.name}/seed-{seed}/detect")]
        cells = []
        for seed in seeds:
            detect = done[f"{s.name}/seed-{seed}/detect"]
            cleanlab = done.get(f"{s.name}/seed-{seed}/cleanlab")
            cells.append((seed, detect, cleanlab))
        methods: dict[str, dict] = {}
        for name in METHOD_NAMES:
            rows = []
            for seed, detect, cleanlab in cells:
                source = cleanlab if name == "cleanlab" else detect
                if source and name in source["methods"]:
                    rows.append((source["methods"][name], detect["plain_training_seconds"]))
            if not rows:
                continue
            entry = {metric: _stat([r[metric] for r, _ in rows]) for metric in METRICS}
            entry["seconds"] = _stat([r["seconds"] for r, _ in rows])
            entry["x_plain_run"] = _stat([r["seconds"] / plain for r, plain in rows])
            entry["seeds"] = len(rows)
            methods[name] = entry
        extras = {}
        for seed, detect, cleanlab in cells:
            if cleanlab:
                extras.setdefault("cleanlab_find_label_issues", []).append(cleanlab["find_label_issues"])
            extras.setdefault("plain_training_seconds", []).append(detect["plain_training_seconds"])
            extras.setdefault("test_accuracy_noisy", []).append(detect["test_accuracy"])
            extras.setdefault("positives", []).append(detect["positives"])
        cleaning = None
        if s.kind == "noise":
            rows = []
            for seed in seeds:
                drop = done.get(f"{s.name}/seed-{seed}/clean-drop")
                relabelled = done.get(f"{s.name}/seed-{seed}/clean-relabel")
                true = done.get(f"true-labels/seed-{seed}")
                if drop or relabelled:
                    rows.append({"seed": seed, "noisy": done[f"{s.name}/seed-{seed}/detect"]["test_accuracy"],
                                 "drop": drop and drop["test_accuracy"],
                                 "relabel": relabelled and relabelled["test_accuracy"],
                                 "true": true and true["test_accuracy"],
                                 "drop_mislabeled_left": drop and drop["mislabeled_left"],
                                 "relabel_mislabeled_left": relabelled and relabelled["mislabeled_left"]})
            if rows:
                cleaning = {col: _stat([r[col] for r in rows]) for col in ("noisy", "drop", "relabel", "true")}
                for col in ("drop", "relabel"):
                    cleaning[f"{col}_recovered"] = _stat([_recovered(r["noisy"], r[col], r["true"]) for r in rows])
                cleaning["per_seed"] = rows
        summary[s.name] = {"setting": asdict(s), "title": s.title, "seeds": seeds, "methods": methods,
                           "extras": extras, "cleaning": cleaning,
                           "roc_seed": seeds[0] if seeds else None,
                           "roc": _merged_roc(done, s, seeds[0]) if seeds else {}}
    missing = [k for k in by_key if done.get(k) is None]
    return {"config": asdict(config), "num_samples": num_samples, "settings": summary,
            "tasks": {k: done.get(k) and {kk: vv for kk, vv in done[k].items() if kk not in ("roc", "top_k",
                      "top_k_suggested_label")} for k in by_key},
            "missing_tasks": missing}


def _merged_roc(done: dict, s: Setting, seed: int) -> dict:
    roc = dict(done[f"{s.name}/seed-{seed}/detect"]["roc"])
    cleanlab = done.get(f"{s.name}/seed-{seed}/cleanlab")
    if cleanlab:
        roc.update(cleanlab["roc"])
    return roc


def _recovered(noisy: float | None, cleaned: float | None, true: float | None) -> float | None:
    """Share of the accuracy lost to noise that cleaning won back (1 = as good as the true labels)."""
    if noisy is None or cleaned is None or true is None or true - noisy <= 0:
        return None
    return (cleaned - noisy) / (true - noisy)


def _fmt(stat: dict, digits: int = 4, percent: bool = False) -> str:
    if stat is None or stat.get("mean") is None:
        return "n/a"
    scale = 100.0 if percent else 1.0
    text = f"{stat['mean'] * scale:.{digits}f}"
    if len([v for v in stat["values"] if v is not None]) > 1:
        text += f" ± {stat['std'] * scale:.{digits}f}"
    return text


def render_markdown(results: dict) -> str:
    """The tables a person reads: one per setting, the cleaning effect, the command and every task's wall time.
    Numbers only: what they are measured against (the project's targets) is docs/benchmarks.md's to say."""
    config = results["config"]
    lines = [f"# CSL benchmark: {config['data']}"
             + (f" ({results['num_samples']} samples, subset)" if config["subset"] else
                f" ({results['num_samples']} samples)"), ""]
    if results.get("command"):
        lines += ["Command:", "", "```", results["command"], "```", ""]
    machine = results.get("machine", {})
    models = {t["model"] for t in results["tasks"].values() if t and t.get("model")}
    model = ", ".join(sorted(models)) if models else config["model"]
    load = [machine.get(f"load_average_at_{when}") for when in ("start", "end")]
    load_text = " and ".join("?" if v is None else f"{v:.1f}" for v in load)
    lines += [f"Seeds {', '.join(map(str, config['seeds']))}; {config['epochs']} epochs; model {model}; "
              f"baselines {config['baselines']}; cleanlab {config['folds']}-fold. Every training uses the "
              f"engine's default settings (no per-method tuning). Device {machine.get('device', '?')}, "
              f"{machine.get('cpu_count', '?')} CPU cores, {machine.get('torch_threads', '?')} torch thread(s), "
              f"torch {machine.get('torch', '?')}; 1-minute load average {load_text} when this report was "
              "started and written (wall times depend on what else ran).", "",
              "Scores are oriented so that higher = more suspicious. Seconds = wall time to obtain the score: "
              "for methods read from the training run, that run's training loop (the same for all of them: "
              "they come free with training) plus scoring; the eval pass adds one inference pass per epoch; "
              "cleanlab = K fold trainings + out-of-fold prediction + cleanlab. `x plain` = seconds / one plain "
              "training run (the training loop of the same cell's run). On a shared machine the load changes "
              "between tasks, so wall-time ratios between tasks run at different times are only indicative; "
              "*training work* is the cost independent of hardware and load. Mean ± std over seeds.", ""]
    if results.get("missing_tasks"):
        lines += [f"**Incomplete:** {len(results['missing_tasks'])} task(s) not finished: "
                  + ", ".join(results["missing_tasks"]), ""]
    for name, entry in results["settings"].items():
        methods = entry["methods"]
        if not methods:
            continue
        positives = entry["extras"].get("positives", [])
        lines += [f"## {entry['title']} ({positives[0] if positives else '?'} positives)", ""]
        lines += ["| method | AUROC | AUPR | FPR@95TPR | P@k | seconds | x plain | training work |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        best = {m: _best(methods, m) for m in METRICS}
        for method, stats in methods.items():
            cells = []
            for metric in METRICS:
                text = _fmt(stats[metric])
                cells.append(f"**{text}**" if method in best[metric] else text)
            lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells)
                         + f" | {_fmt(stats['seconds'], 1)} | {_fmt(stats['x_plain_run'], 2)} | "
                         + f"{_training_work(method, config['folds'])} |")
        lines += [""]
        lines += [_verdict(methods, best), ""]
        for issues in entry["extras"].get("cleanlab_find_label_issues", [])[:1]:
            precision = "n/a" if issues["precision"] is None else f"{issues['precision']:.3f}"
            lines += [f"cleanlab `find_label_issues` (seed {entry['seeds'][0]}): flagged {issues['flagged']}, "
                      f"precision {precision}, recall {issues['recall']:.3f}.", ""]
    cleaning = {n: e for n, e in results["settings"].items() if e.get("cleaning")}
    if cleaning:
        lines += ["## Cleaning effect: retrain after acting on the top-k by CSL (k = number of positives)", "",
                  "Held-out test accuracy, %. *Recovered* = share of the accuracy lost to noise that the cleaning "
                  "won back: (cleaned - noisy) / (true labels - noisy).", "",
                  "| noise | noisy labels | drop top-k | relabel top-k to suggested | true labels | recovered (drop) "
                  "| recovered (relabel) |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, entry in cleaning.items():
            c = entry["cleaning"]
            lines.append(f"| {entry['title']} | {_fmt(c['noisy'], 2, True)} | {_fmt(c['drop'], 2, True)} | "
                         f"{_fmt(c['relabel'], 2, True)} | {_fmt(c['true'], 2, True)} | "
                         f"{_fmt(c['drop_recovered'], 2)} | {_fmt(c['relabel_recovered'], 2)} |")
        lines += [""]
    lines += ["## Wall time of every task", "",
              "Wall clock of the process that finished each task (training, prediction and scoring; a task "
              "continued after a restart counts only its last part, the method seconds above count every "
              "epoch) and the machine's 1-minute load average when it ended.", "",
              "| task | seconds | load average |", "| --- | --- | --- |"]
    for key, task in results["tasks"].items():
        if task:
            load = task.get("load_average_at_end")
            lines.append(f"| {key} | {task['task_wall_seconds']:.0f} | {'n/a' if load is None else f'{load:.1f}'} |")
        else:
            lines.append(f"| {key} | not finished | |")
    lines += [""]
    return "\n".join(lines)


def _training_work(method: str, folds: int) -> str:
    """Hardware- and load-independent cost, in training runs over all N samples for the same epochs."""
    if method == "cleanlab":
        return f"{folds - 1} runs ({folds} x {folds - 1}/{folds} of N) + 1 prediction pass"
    if method == "eval_csl":
        return "1 run + 1 inference pass per epoch"
    if method == "curvature":
        return "1 run + 11 input-gradient passes per epoch"
    return "1 run (free)"


def _best(methods: dict, metric: str) -> set[str]:
    values = {m: s[metric]["mean"] for m, s in methods.items() if s[metric]["mean"] is not None}
    if not values:
        return set()
    pick = min if metric in LOWER_IS_BETTER else max
    target = pick(values.values())
    return {m for m, v in values.items() if math.isclose(v, target, rel_tol=0, abs_tol=5e-5)}


def _verdict(methods: dict, best: dict[str, set[str]]) -> str:
    if "csl" not in methods:
        return ""
    parts = []
    for metric, winners in best.items():
        if "csl" in winners:
            parts.append(f"{METRIC_NAMES[metric]}: CSL best")
        else:
            winner = sorted(winners)[0]
            gap = methods[winner][metric]["mean"] - methods["csl"][metric]["mean"]
            parts.append(f"{METRIC_NAMES[metric]}: **CSL does not win**, {METHOD_NAMES[winner]} is better by "
                         f"{abs(gap):.4f}")
    return "Verdict (training-pass CSL vs the best method): " + "; ".join(parts) + "."


def render_roc_html(results: dict) -> str:
    """One ROC panel per setting (first seed), every method; a self-contained HTML page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    entries = [(n, e) for n, e in results["settings"].items() if e.get("roc")]
    cols = min(3, max(1, len(entries)))
    rows = max(1, math.ceil(len(entries) / cols))
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[f"{e['title']} (seed {e['roc_seed']})" for _, e in entries] or ["no results"])
    palette = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#000000"]
    colours = {m: palette[i % len(palette)] for i, m in enumerate(METHOD_NAMES)}
    for i, (name, entry) in enumerate(entries):
        row, col = i // cols + 1, i % cols + 1
        for method, curve in entry["roc"].items():
            auc = entry["methods"].get(method, {}).get("auroc", {}).get("mean")
            label = METHOD_NAMES.get(method, method) + (f" ({auc:.3f})" if auc is not None else "")
            fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", name=label,
                                     legendgroup=method, showlegend=i == 0,
                                     line={"color": colours.get(method), "width": 3 if method == "csl" else 1.5}),
                          row=row, col=col)
        fig.update_xaxes(title_text="false-positive rate", type="log", range=[-4, 0], row=row, col=col)
        fig.update_yaxes(title_text="true-positive rate", range=[0, 1.01], row=row, col=col)
    fig.update_layout(title=f"ROC curves, {results['config']['data']} (log FPR axis)", height=420 * rows,
                      width=460 * cols + 320)
    return fig.to_html(include_plotlyjs=True, full_html=True)
