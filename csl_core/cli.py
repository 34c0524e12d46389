"""Command line: ``python -m csl_core train | scores | info``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .analysis.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
from .analysis.scores import DEFAULT_RANKING, SCORES
from .config import NOISE_KINDS, SCHEDULES, TrainConfig
from .data import DataError
from .engine.distributed import launched_distributed
from .engine.train import train
from .progress import progress_bar
from .run.files import atomic_write_csv
from .run.store import RunError, RunStore


class _ProgressCallbacks:
    """A tqdm bar over the batches of each epoch, with the finished epoch's loss and accuracy."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.epochs = 0

    def on_start(self, info):
        self.epochs = info["epochs"]
        self.batches = info["batches"]
        if not self.quiet:
            print(f"training {info['model']} on {info['samples']} samples, {info['device']}, "
                  f"epochs {info['start_epoch'] + 1}-{info['epochs']}", file=sys.stderr)

    def on_batch(self, epoch, batch, batches):
        if self.quiet:
            return
        if self.bar is None:
            # Off when stderr is not a terminal: a log gets the one line per epoch, not every redraw.
            self.bar = progress_bar(total=batches, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False)
        self.bar.update(1)

    def on_epoch(self, epoch, summary):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.quiet:
            print(f"epoch {epoch + 1}/{self.epochs}  loss {summary['loss']:.4f}  "
                  f"acc {summary['accuracy']:.4f}  {summary['seconds']:.1f}s", file=sys.stderr)

    def should_stop(self):
        return False


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _fractions(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    return tuple(_fraction(part) for part in text.split(",") if part.strip())


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csl_core",
                                     description="Find mislabeled and duplicate images by Cumulative Sample "
                                                 "Loss (CSL) from one training run.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and record every sample's loss each epoch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", default="demo",
                   help="data source: demo | fashion-mnist[:DIR] | cifar10[:DIR] | cifar100[:DIR] | "
                        "imagefolder:ROOT | csv:FILE[:ROOT]")
    t.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 15; demo 12; csv / imagefolder 20)")
    t.add_argument("--model", default=None,
                   help="small-cnn | airbench | resnet18 | auto (small CNN up to 64 px, ResNet-18 above); "
                        "default airbench for csv / imagefolder, auto for the rest")
    t.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    t.add_argument("--inject-noise", type=_fraction, default=None,
                   help="flip this fraction of labels (seeded; see --noise-kind) to measure detection; "
                        "demo default 0.05, others 0")
    t.add_argument("--noise-kind", choices=NOISE_KINDS, default="symmetric",
                   help="where a flipped label goes: any other class (symmetric), class c to c+1 or to "
                        "--noise-map (pairflip), or to the class a short warm-up training confuses it with "
                        "most, or to --noise-map (confusable)")
    t.add_argument("--noise-map", default=None, metavar="A:B,C:D",
                   help="class map for pairflip / confusable noise, by class name or index, e.g. "
                        "'shirt:t-shirt,t-shirt:shirt'; classes not named keep their labels")
    t.add_argument("--inject-duplicates", type=int, default=None,
                   help="make K duplicate pairs with conflicting labels (demo default ~0.5%% of N)")
    t.add_argument("--subset", type=int, default=None, help="train on a seeded random subset of N samples")
    t.add_argument("--eval-pass", action="store_true",
                   help="also score every sample once per epoch in eval mode without augmentation "
                        "(the authors' released protocol; costs one inference pass per epoch)")
    t.add_argument("--resume", action="store_true", help="continue --out from its last finished epoch")
    t.add_argument("--batch-size", type=int, default=None,
                   help="samples per step, per process under torchrun (default 128; csv / imagefolder 256)")
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate, SGD with momentum 0.9 (default 0.05; csv / imagefolder 0.2)")
    t.add_argument("--schedule", choices=SCHEDULES, default="onecycle")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--image-size", type=int, default=None,
                   help="resize the user's images to this size (imagefolder/csv; default 32)")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop and flip (default: on, off for the demo)")
    t.add_argument("--device", default="auto", help="auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16 autocast): default on for CUDA and for CPUs with bf16 units (AMX)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is often faster on a busy shared machine")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--download", action="store_true", help="allow downloading Fashion-MNIST / CIFAR")
    t.add_argument("--quiet", action="store_true", help="no progress output")

    s = sub.add_parser("scores", help="rank a run's samples by a score")
    s.add_argument("run", help="run folder")
    s.add_argument("--by", default=None, metavar="SCORE",
                   help="score to rank by (default: " + " if the run has it, else ".join(DEFAULT_RANKING)
                        + "): " + ", ".join(SCORES))
    s.add_argument("--top", type=int, default=20, help="rows to print")
    s.add_argument("--csv", default=None, help="write every sample's scores to this CSV file")

    i = sub.add_parser("info", help="summarise a run: data, model, epochs, timings, detection quality")
    i.add_argument("run", help="run folder")

    d = sub.add_parser("duplicates", help="exact and near-duplicate groups, label conflicts flagged, ranked by CSL")
    d.add_argument("run", help="run folder")
    d.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"cosine similarity of embeddings from which two samples are near duplicates "
                        f"(default {DEFAULT_THRESHOLD}); exact copies are always grouped")
    d.add_argument("--csv", default=None, help="write one row per grouped sample to this CSV file")
    d.add_argument("--top", type=int, default=10, help="groups to print")
    d.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS,
                   help=f"nearest neighbours searched per sample (default {DEFAULT_NEIGHBOURS})")

    b = sub.add_parser("bench", help="benchmark CSL against every baseline on injected noise and duplicates",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--data", default="demo", help="data source (as for train)")
    b.add_argument("--noise", type=_fractions, default=(0.01, 0.02, 0.05, 0.10),
                   help="comma-separated noise levels; 'none' for duplicates only")
    b.add_argument("--noise-kind", choices=NOISE_KINDS, default="symmetric",
                   help="where flipped labels go: symmetric, pairflip (c to c+1) or confusable (to the class a "
                        "short warm-up confuses each class with most)")
    b.add_argument("--duplicates", type=int, default=None,
                   help="duplicate pairs with conflicting labels (default about 0.5%% of N, at most 250; 0: none)")
    b.add_argument("--seeds", type=_integers, default=(1, 2, 3), help="comma-separated seeds")
    b.add_argument("--epochs", type=int, default=12)
    b.add_argument("--model", default="auto", help="small-cnn | resnet18 | auto")
    b.add_argument("--baselines", choices=("all", "fast"), default="all",
                   help="fast leaves out the slow input-loss curvature baseline")
    b.add_argument("--subset", type=int, default=None, help="a seeded random subset of N training samples")
    b.add_argument("--clean-at", type=_fractions, default=None,
                   help="noise levels at which to retrain after cleaning (default: every level; 'none')")
    b.add_argument("--folds", type=int, default=3, help="cross-validation folds for confident learning")
    b.add_argument("--device", default="auto")
    b.add_argument("--out", default=None, help="output folder (default bench-results/<data>); "
                                               "re-running with the same settings resumes it")
    b.add_argument("--report-only", action="store_true",
                   help="train nothing: write the results from the cells finished so far")
    b.add_argument("--quiet", action="store_true", help="no progress output")

    r = sub.add_parser("bench-real", help="detection on real label noise: train a noisy label column through the "
                                          "csv: source and score against a trusted column (e.g. CIFAR-10N)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--labels", required=True, help="label file: a path column and several label columns")
    r.add_argument("--root", default=None, help="folder the paths are relative to (default: the file's folder)")
    r.add_argument("--columns", default="aggre_label", help="comma-separated noisy label columns to train on")
    r.add_argument("--truth", default="clean_label", help="the trusted label column")
    r.add_argument("--seeds", type=_integers, default=(1,), help="comma-separated seeds")
    r.add_argument("--epochs", type=_integers, default=(),
                   help="extra epoch budgets, trained without augmentation (the memorisation regime); the "
                        "source's recipe always runs")
    r.add_argument("--recipe", action=argparse.BooleanOptionalAction, default=True,
                   help="also train with the source's recipe as it is (--no-recipe: only the --epochs budgets)")
    r.add_argument("--model", default=None, help="model (default: the source's recipe)")
    r.add_argument("--subset", type=int, default=None, help="a seeded random subset of N samples")
    r.add_argument("--test", default=None,
                   help="a path,label file of clean test images (paths relative to --root when given)")
    r.add_argument("--cleanlab", action="store_true", help="also confident learning with K-fold training")
    r.add_argument("--folds", type=int, default=3)
    r.add_argument("--clean", action="store_true",
                   help="retrain after dropping / relabelling the top of the default ranking (needs --test)")
    r.add_argument("--device", default="auto")
    r.add_argument("--out", required=True, help="output folder (outside the data; reruns reuse finished runs)")
    r.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (DataError, RunError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 130


def cmd_train(args) -> int:
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = args.out
    rank = int(os.environ.get("RANK", "0"))
    if out is None and launched_distributed():
        raise ValueError("under torchrun every rank must write to the same run folder: pass --out PATH")
    if out is None:
        import time
        stem = args.data.split(":", 1)[0]
        out = str(Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    config = TrainConfig.for_source(args.data, epochs=args.epochs, model=args.model, batch_size=args.batch_size,
                                    lr=args.lr, schedule=args.schedule, seed=args.seed, eval_pass=args.eval_pass,
                                    inject_noise=args.inject_noise, noise_kind=args.noise_kind,
                                    noise_map=args.noise_map, inject_duplicates=args.inject_duplicates,
                                    subset=args.subset, image_size=args.image_size, augment=args.augment,
                                    device=args.device, amp=args.amp, num_workers=args.workers,
                                    compile=args.compile,
                                    download=args.download)
    quiet = args.quiet or rank != 0  # under torchrun, rank 0 speaks for all
    result = train(config, out, resume=args.resume, callbacks=_ProgressCallbacks(quiet), progress=not quiet)
    if rank != 0:
        return 0
    print(f"run folder: {result.run.path}")
    if not args.quiet:
        _print_info(result.run)
    return 0


def cmd_scores(args) -> int:
    from .analysis.scores import default_score, suspicion

    store = RunStore(args.run)
    scores = store.scores()
    args.by = args.by or default_score(scores)
    order = np.argsort(-suspicion(scores, args.by), kind="stable")
    ranked = scores.iloc[order]
    if args.csv:
        atomic_write_csv(Path(args.csv), ranked.reset_index())
        print(f"wrote {len(ranked)} rows to {args.csv}")
    columns = [c for c in ("sample_id", "class_name", "csl", "csl_rank", args.by, "suggested_label",
                           "suggested_confidence", "is_mislabeled") if c in ranked.columns]
    columns = list(dict.fromkeys(columns))
    print(ranked[columns].head(args.top).to_string())
    return 0


def cmd_info(args) -> int:
    _print_info(RunStore(args.run))
    return 0


def cmd_duplicates(args) -> int:
    from .analysis.duplicates import injected_pair_recall, member_table
    from .run.duplicates import find_duplicates

    store = RunStore(args.run)
    report = find_duplicates(store, threshold=args.threshold, k=args.neighbours, progress=True)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    groups = report.groups
    samples = store.samples()
    members = member_table(report, samples)
    if args.csv:
        atomic_write_csv(Path(args.csv), members)
        print(f"wrote {len(members)} rows to {args.csv}")
    print(f"{len(groups)} duplicate groups at threshold {args.threshold} ({int(groups['exact'].sum())} exact, "
          f"{int(groups['label_conflict'].sum())} with conflicting labels), {len(members)} samples")
    columns = ["rank", "size", "label_conflict", "exact", "csl", "similarity", "sample_id", "class_name"]
    shown = members[members["rank"] <= args.top]
    if len(shown):
        print(shown[columns].to_string(index=False))
    if "duplicate_of" in samples.columns and (samples["duplicate_of"] >= 0).any():
        from sklearn.metrics import roc_auc_score

        found = injected_pair_recall(report.samples["group"].to_numpy(), samples["duplicate_of"].to_numpy(),
                                     groups)
        truth = samples["duplicate_of"].to_numpy() >= 0
        print(f"injected   {found['found_and_flagged']}/{found['pairs']} pairs grouped and flagged "
              f"(recall {found['recall']:.4f}), {found['false_groups']} groups without an injected pair")
        for column in ("csl", "duplicate_score"):
            print(f"AUROC      {column:<15} {roc_auc_score(truth, report.samples[column].fillna(-np.inf)):.4f}"
                  f"  (both members of {found['pairs']} injected pairs)")
    return 0


def _print_info(store: RunStore) -> None:
    meta = store.meta
    report = store.report()
    print(f"run        {store.path}")
    print(f"data       {meta['source']}  ({meta['num_samples']} samples, {len(meta['classes'])} classes)")
    print(f"model      {meta['model']} on {meta.get('device', '?')}")
    print(f"epochs     {meta['finished_epochs']}/{meta['epochs']} finished"
          + ("" if meta.get("completed") else "  (not complete: --resume continues it)"))
    timings = [e["seconds"] for e in report.get("epochs", [])]
    if timings:
        print(f"time       {sum(timings):.1f}s, median {np.median(timings):.2f}s an epoch")
    skipped = report.get("skipped", [])
    if skipped:
        print(f"skipped    {len(skipped)} input(s); listed in {store.path / 'report.json'}")
    if report.get("test_accuracy") is not None:
        print(f"test acc   {report['test_accuracy']:.4f}")
    if not meta["finished_epochs"]:
        return
    from .analysis.scores import default_score, suspicion

    scores = store.scores()
    truth = scores["is_mislabeled"].to_numpy(bool) if meta.get("has_ground_truth") else None
    if truth is not None and not 0 < truth.sum() < len(truth):
        truth = None
    _print_standing(store, scores, truth)
    if truth is not None:
        from sklearn.metrics import roc_auc_score

        for method in dict.fromkeys(("csl", "final_loss", "aum", "knn_disagreement", "fused", default_score(scores))):
            if method in scores.columns:
                print(f"AUROC      {method:<16} {roc_auc_score(truth, suspicion(scores, method)):.4f}  "
                      f"({truth.sum()} injected mislabeled samples)")


def _print_standing(store: RunStore, scores, truth) -> None:
    """Training accuracy, the estimated noise and the review budget it implies, and the memorised warning."""
    from .analysis.noise_rate import standing
    from .analysis.scores import default_score, suspicion

    probabilities = store.probabilities()
    epochs = store.report().get("epochs", [])
    accuracy = epochs[-1].get("accuracy") if epochs else None
    if accuracy is not None:
        print(f"train acc  {accuracy:.4f}  (last epoch, on the given labels)")
    if probabilities is None:
        return
    ranking = default_score(scores)
    where = standing(scores["label"].to_numpy(np.int64), np.asarray(probabilities), suspicion(scores, ranking),
                     accuracy, truth)
    line = (f"noise      about {where['estimated_count']} images ({where['estimated_rate']:.1%}) are likely "
            f"mislabeled (confident joint on the run's mean probabilities); the top {where['k']} by {ranking} "
            f"hold {where['flagged_in_top_k']} of those the estimate flags")
    if truth is not None:
        line += f" and {where['true_in_top_k']} of the {where['true_count']} known ones"
    print(line)
    if where["memorised"]:
        print(f"warning    training accuracy {accuracy:.1%}: the network has memorised its labels, wrong ones "
              "included, so their last-epoch loss is low and stops separating them; rank by csl or fused "
              "(summed over training), not final_loss. The noise estimate above is a floor on such a run.")


def cmd_bench(args) -> int:
    from .bench import BenchConfig, bench_command, run_benchmark

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
    from .bench.real_noise import RealNoiseBenchmark, RealNoiseConfig

    config = RealNoiseConfig(labels=args.labels, root=args.root,
                             columns=tuple(c.strip() for c in args.columns.split(",") if c.strip()),
                             truth=args.truth, seeds=args.seeds, epochs=args.epochs, recipe=args.recipe,
                             model=args.model,
                             subset=args.subset, test=args.test, cleanlab=args.cleanlab, folds=args.folds,
                             clean=args.clean, device=args.device)
    RealNoiseBenchmark(config, args.out, quiet=args.quiet).run()
    print(f"results: {Path(args.out) / 'results.md'}, {Path(args.out) / 'results.json'}")
    return 0


COMMANDS = {"train": cmd_train, "scores": cmd_scores, "info": cmd_info, "duplicates": cmd_duplicates,
            "bench": cmd_bench, "bench-real": cmd_bench_real}
