"""The benchmark's plan: its configuration, the settings (protocol x level) and the tasks they need."""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.scores import SCORES
from ..data import NOISE_KINDS, load_source
from ..errors import InputError

BASELINE_SETS = ("all", "fast")
# Methods read from the one training run, named and ordered as in the one score table.
RUN_METHODS = {name: score.label for name, score in SCORES.items() if score.benchmarked}
METHOD_NAMES = {**RUN_METHODS, "curvature": "input-loss curvature",
                "cleanlab": "confident learning (cleanlab, K-fold)"}
METRIC_NAMES = {"auroc": "AUROC", "aupr": "AUPR", "fpr_at_95_tpr": "FPR@95TPR", "precision_at_k": "P@k"}
LOWER_IS_BETTER = {"fpr_at_95_tpr"}
# Relative cost of one eval pass and of the curvature estimate, in training epochs, for the ETA only.
EVAL_PASS_WEIGHT = 0.35
CURVATURE_WEIGHT = 8.0
ROC_POINTS = 300
WORKER_POLL_SECONDS = 30.0
CELL_FORMAT = 2  # 2: detection keeps the default ranking's top k (was CSL's)


@dataclass
class BenchConfig:
    """One benchmark plan. Every training in it uses ``TrainConfig`` defaults except the fields here."""

    data: str = "demo"
    noise: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)
    duplicates: int | None = None
    seeds: tuple[int, ...] = (1, 2, 3)
    epochs: int = 12
    model: str = "auto"
    baselines: str = "all"
    subset: int | None = None
    clean_at: tuple[float, ...] | None = None
    folds: int = 3
    device: str = "auto"
    noise_kind: str = "symmetric"  # where flipped labels go: csl_core.data.noise.inject_label_noise

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot be benchmarked."""
        if self.baselines not in BASELINE_SETS:
            raise InputError(f"unknown baseline set {self.baselines!r}; known: {', '.join(BASELINE_SETS)}")
        for p in self.noise:
            if not 0 < p < 1:
                raise InputError(f"noise levels must be fractions in (0, 1), got {p}")
        if self.duplicates is not None and self.duplicates < 0:
            raise InputError(f"--duplicates must be 0 or more pairs, got {self.duplicates}")
        if not self.seeds:
            raise InputError("give at least one seed")
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.folds < 2:
            raise InputError(f"confident learning needs at least 2 folds, got {self.folds}")
        unknown = [p for p in (self.clean_at or ()) if not any(math.isclose(p, q) for q in self.noise)]
        if unknown:
            raise InputError(f"--clean-at {unknown} are not among the noise levels {list(self.noise)}")
        if self.noise_kind not in NOISE_KINDS:
            raise InputError(f"unknown noise kind {self.noise_kind!r}; known: {', '.join(NOISE_KINDS)}")
        if not self.noise and not self.duplicates:
            raise InputError("nothing to benchmark: give noise levels or duplicate pairs")


@dataclass(frozen=True)
class Setting:
    """One protocol at one level: ``noise`` at a fraction of labels flipped, or ``duplicates`` pairs."""

    kind: str  # "noise" | "duplicates"
    value: float

    @property
    def name(self) -> str:
        """The setting's key in file names and results: ``noise-0.05``, ``duplicates-100``."""
        return f"noise-{self.value:g}" if self.kind == "noise" else f"duplicates-{int(self.value)}"

    @property
    def title(self) -> str:
        """The setting as a report heading: ``5% label noise``, ``100 duplicate pairs``."""
        return f"{self.value:.0%} label noise" if self.kind == "noise" else f"{int(self.value)} duplicate pairs"

    @property
    def positive_column(self) -> str:
        """The sample-table column that marks this setting's positives."""
        return "is_mislabeled" if self.kind == "noise" else "is_duplicate"


@dataclass
class Task:
    """One unit of the plan, saved as ``cells/<key>.json`` when done; ``depends`` names the tasks whose
    results it needs first (a cleaning retrain needs its detection run)."""

    key: str
    kind: str  # detect | cleanlab | clean-drop | clean-relabel | true-labels
    seed: int
    setting: Setting | None
    weight: float  # training sample-epochs, for the progress bar
    depends: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- planning

def default_duplicate_pairs(num_samples: int) -> int:
    """The paper's 250 pairs, scaled down to about 0.5% of N for small data sets."""
    return max(1, min(250, int(round(0.005 * num_samples))))


def training_size(config: BenchConfig) -> int:
    """The number of training samples the plan trains on: the source's size, or the subset's."""
    source, _ = load_source(config.data)
    return min(config.subset, len(source)) if config.subset else len(source)


def plan(config: BenchConfig, num_samples: int) -> tuple[list[Setting], list[Task]]:
    """The settings and the ordered tasks: every setting's one-run detection first (the cheapest
    complete answer), then confident learning, then the cleaning retrains."""
    settings = [Setting("noise", p) for p in config.noise]
    pairs = default_duplicate_pairs(num_samples) if config.duplicates is None else config.duplicates
    if pairs:
        settings.append(Setting("duplicates", pairs))
    clean_at = config.noise if config.clean_at is None else config.clean_at
    n, e = num_samples, config.epochs
    detect_weight = n * e * (1 + EVAL_PASS_WEIGHT + (CURVATURE_WEIGHT if config.baselines == "all" else 0))
    tasks: list[Task] = []
    for seed in config.seeds:
        tasks += [Task(f"{s.name}/seed-{seed}/detect", "detect", seed, s, detect_weight) for s in settings]
    for seed in config.seeds:
        tasks += [Task(f"{s.name}/seed-{seed}/cleanlab", "cleanlab", seed, s, n * e * (config.folds - 1))
                  for s in settings]
    for seed in config.seeds:
        cleaning = [s for s in settings if s.kind == "noise" and any(math.isclose(s.value, p) for p in clean_at)]
        for s in cleaning:
            detect = f"{s.name}/seed-{seed}/detect"
            k = int(math.floor(s.value * n))
            tasks.append(Task(f"{s.name}/seed-{seed}/clean-drop", "clean-drop", seed, s, (n - k) * e, [detect]))
            tasks.append(Task(f"{s.name}/seed-{seed}/clean-relabel", "clean-relabel", seed, s, n * e, [detect]))
        if cleaning:
            tasks.append(Task(f"true-labels/seed-{seed}", "true-labels", seed, None, n * e))
    return settings, tasks


def bench_command(config: BenchConfig, out: str | Path) -> str:
    """The command line that reproduces ``config`` (with the thread setting, which changes wall times)."""
    def joined(values) -> str:
        return ",".join(f"{v:g}" for v in values) if values else "none"

    parts = ["python -m csl_core bench", f"--data {shlex.quote(config.data)}", f"--noise {joined(config.noise)}"]
    if config.noise_kind != "symmetric":
        parts.append(f"--noise-kind {config.noise_kind}")
    if config.duplicates is not None:
        parts.append(f"--duplicates {config.duplicates}")
    parts += [f"--seeds {','.join(map(str, config.seeds))}", f"--epochs {config.epochs}",
              f"--model {config.model}", f"--baselines {config.baselines}"]
    if config.subset:
        parts.append(f"--subset {config.subset}")
    if config.clean_at is not None:
        parts.append(f"--clean-at {joined(config.clean_at)}")
    if config.folds != 3:
        parts.append(f"--folds {config.folds}")
    if config.device != "auto":
        parts.append(f"--device {config.device}")
    parts.append(f"--out {shlex.quote(str(out))}")
    threads = [f"{name}={os.environ[name]}" for name in ("OMP_NUM_THREADS",) if name in os.environ]
    return " ".join(threads + parts)
