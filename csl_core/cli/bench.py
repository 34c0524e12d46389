"""Measuring commands: ``bench`` (the paper's protocols), ``bench-real`` (real label noise) and
``memorization`` (the stability estimate)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..config import TrainConfig, default_epochs
from ..engine.train import train
from ..errors import InputError
from ..run.layout import MEMORIZATION_COMPARISON, MEMORIZATION_ESTIMATE, META
from ..run.store import RunError, RunStore
from .runs import ProgressCallbacks


def cmd_bench(args) -> int:
    """``bench``: run (or resume) the benchmark plan and print its report."""
    from ..bench import BenchConfig, bench_command, run_benchmark

    config = BenchConfig(data=args.data, noise=args.noise, duplicates=args.duplicates, seeds=args.seeds,
                         epochs=args.epochs, model=args.model, baselines=args.baselines, subset=args.subset,
                         clean_at=args.clean_at, folds=args.folds, device=args.device, noise_kind=args.noise_kind)
    out = Path(args.out or Path("bench-results") / args.data.split(":", 1)[0])
    run_benchmark(config, out, command=bench_command(config, out), quiet=args.quiet, report_only=args.report_only)
    if not args.quiet:
        print((out / "results.md").read_text())
    print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'roc.html'}")
    return 0


def cmd_bench_real(args) -> int:
    from ..bench.real_noise import RealNoiseBenchmark, RealNoiseConfig

    config = RealNoiseConfig(labels=args.labels, root=args.root,
                             columns=tuple(c.strip() for c in args.columns.split(",") if c.strip()),
                             truth=args.truth, seeds=args.seeds, epochs=args.epochs, recipe=args.recipe,
                             model=args.model, lr=args.lr, batch_size=args.batch_size, recipe_epochs=args.recipe_epochs,
                             subset=args.subset, test=args.test, cleanlab=args.cleanlab, folds=args.folds,
                             clean=args.clean, cleanings=args.cleanings, device=args.device)
    RealNoiseBenchmark(config, args.out, quiet=args.quiet).run()
    print(f"results: {Path(args.out) / 'results.md'}, {Path(args.out) / 'results.json'}")
    return 0


def cmd_memorization(args) -> int:
    import time

    import torch

    from ..engine.memorization import estimate_memorization

    if args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)  # the ordinary run trains here with as many threads as each model
    out = Path(args.out or Path("runs") / f"{(args.data or 'demo').split(':', 1)[0]}-memorization")
    reference_wall = None
    if (out / META).is_file():
        store = RunStore(out)
        options = {"--epochs": args.epochs, "--inject-noise": args.inject_noise, "--subset": args.subset,
                   "--inject-duplicates": args.inject_duplicates, "--train-seed": args.train_seed}
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            raise InputError(f"{out} is already a run, and {', '.join(given)} describe a run to train: leave them "
                             "out to estimate against it, or pass another --out")
        if args.data is not None and args.data != store.meta["source"]:
            raise InputError(f"{out} is a run of {store.meta['source']!r}, not of {args.data!r}; pass another --out")
        if not store.meta.get("completed"):
            raise RunError(f"{out} is not complete; finish it first: python -m csl_core train --out {out} --resume")
    else:
        data = args.data or "demo"
        config = TrainConfig(data=data, epochs=args.epochs or default_epochs(data), seed=args.train_seed or 0,
                             eval_pass=True, inject_noise=args.inject_noise, inject_duplicates=args.inject_duplicates,
                             subset=args.subset, device=args.device)
        began = time.perf_counter()
        train(config, out, callbacks=ProgressCallbacks(args.quiet), progress=not args.quiet)
        reference_wall = time.perf_counter() - began
        store = RunStore(out)
    try:
        result = estimate_memorization(store, models=args.models, fraction=args.fraction, seed=args.seed,
                                       workers=args.workers, threads=args.threads, device=args.device,
                                       progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted; the finished models are kept and the same command continues the estimate",
              file=sys.stderr)
        return 130
    print(render_memorization(result.comparison))
    if reference_wall is not None:
        print(f"wall time: the ordinary run {reference_wall:.1f} s, the {result.trained} subset trainings of this "
              f"call {result.wall_seconds:.1f} s")
    else:
        print(f"wall time of this call ({result.trained} subset trainings): {result.wall_seconds:.1f} s")
    print(f"kept: {out / MEMORIZATION_ESTIMATE}, {out / MEMORIZATION_COMPARISON}")
    return 0


def render_memorization(comparison: dict) -> str:
    """The comparison of ``comparison.json`` as plain-text tables."""
    import pandas as pd

    table = pd.DataFrame(comparison["table"])
    wide = table.pivot(index="score", columns="samples", values=["cosine", "spearman"])
    order = list(dict.fromkeys(table["score"]))
    subsets = list(dict.fromkeys(table["samples"]))
    wide = wide.reindex(order)[[(m, s) for m in ("cosine", "spearman") for s in subsets]]
    wide.columns = [f"{m} {s}" for m, s in wide.columns]
    cost = comparison["cost"]
    noise = pd.DataFrame(comparison["by_models"])
    lines = [f"stability memorisation from {comparison['models']} models on {comparison['fraction']:.0%} of the "
             f"samples each ({comparison['measure']}), against each score of the run:",
             wide.to_string(float_format=lambda v: f"{v:.3f}"), "",
             "the estimator's own noise (CSL against the estimate from the first k models; split-half: the "
             "estimates from two disjoint halves of them):",
             noise.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "",
             f"cost: {cost['model_seconds_total']:.0f} s of model training "
             f"(median {cost['model_seconds_median']:.1f} s a model) against "
             f"{cost['reference_training_seconds']:.1f} s for the ordinary run"
             + (f": {cost['work_ratio']:.0f}x" if cost.get("work_ratio") else "")]
    return "\n".join(lines)
