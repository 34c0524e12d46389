"""Command line: ``python -m csl_core`` (or ``csl-clean``) ``train | scores | info | duplicates | bench | import |
export | app``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .analysis.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
from .analysis.scores import DEFAULT_RANKING, SCORES
from .bench.planning import BASELINE_SETS, BenchConfig
from .config import FINETUNE_EPOCHS, FINETUNE_LR, SCHEDULES, TrainConfig, default_epochs
from .data import NOISE_KINDS, SOURCES, DataError
from .engine.distributed import launched_distributed
from .engine.models import BACKBONES
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


def recipes(field: str, default) -> str:
    """``default`` and the sources whose recipe in :data:`csl_core.data.SOURCES` sets ``field`` otherwise,
    for the help texts (``128; imagefolder 256, csv 256``)."""
    own = [f"{name} {value}" for name, kind in SOURCES.items() if (value := getattr(kind, field)) is not None]
    return f"{default}" + (f"; {', '.join(own)}" if own else "")


def build_parser(prog: str = "python -m csl_core") -> argparse.ArgumentParser:
    """The command-line parser (``prog`` names it in messages); every default comes from ``TrainConfig``,
    ``BenchConfig`` or the sources table, so that the command line and the library cannot disagree."""
    train_defaults, bench_defaults = TrainConfig(), BenchConfig()
    sources = " | ".join(kind.usage for kind in SOURCES.values())
    own_epochs = ", ".join(f"{name} {kind.epochs}" for name, kind in SOURCES.items() if kind.epochs)
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Find mislabeled and duplicate images by Cumulative Sample "
                                                 "Loss (CSL) from one training run.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and record every sample's loss each epoch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", default=train_defaults.data, help=f"data source: {sources}")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default {train_defaults.epochs}; {own_epochs}; fine-tuning "
                        f"{FINETUNE_EPOCHS})")
    t.add_argument("--model", default=None,
                   help=f"small-cnn | airbench | resnet18 | auto (small CNN up to 64 px, ResNet-18 above); default "
                        f"{recipes('model', train_defaults.model)}; with --pretrained or --weights: "
                        f"{' | '.join(BACKBONES)} (torchvision's ImageNet architecture; auto: resnet18)")
    t.add_argument("--pretrained", action="store_true",
                   help="fine-tune from torchvision's ImageNet weights (downloaded once into torch's cache, "
                        "$TORCH_HOME/hub/checkpoints); image size and normalisation from the weights; defaults "
                        f"--lr {FINETUNE_LR} and --epochs {FINETUNE_EPOCHS}")
    t.add_argument("--weights", default=None, metavar="FILE",
                   help="fine-tune from a local state dict of the --model architecture (as --pretrained, offline)")
    t.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    t.add_argument("--inject-noise", type=_fraction, default=None,
                   help="flip this fraction of labels (seeded; see --noise-kind) to measure detection; default "
                        + ", ".join(f"{name} {kind.noise:g}" for name, kind in SOURCES.items() if kind.noise)
                        + ", others 0")
    t.add_argument("--noise-kind", choices=NOISE_KINDS, default=train_defaults.noise_kind,
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
                   help="samples per step, per process under torchrun (default "
                        f"{recipes('batch_size', train_defaults.batch_size)})")
    t.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (SGD, momentum {train_defaults.momentum}; default "
                        f"{recipes('lr', train_defaults.lr)}, "
                        f"fine-tuning {FINETUNE_LR})")
    t.add_argument("--schedule", choices=SCHEDULES, default=train_defaults.schedule)
    t.add_argument("--seed", type=int, default=train_defaults.seed)
    t.add_argument("--image-size", type=int, default=None,
                   help="resize the user's images to this size (imagefolder/csv; default 32)")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop and flip (default: on, off for "
                        + ", ".join(name for name, kind in SOURCES.items() if not kind.augment) + ")")
    t.add_argument("--device", default=train_defaults.device,
                   help="auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16 autocast): default on for CUDA and for CPUs with bf16 units (AMX)")
    t.add_argument("--workers", type=int, default=train_defaults.num_workers, help="DataLoader worker processes")
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
    b.add_argument("--data", default=bench_defaults.data, help="data source (as for train)")
    b.add_argument("--noise", type=_fractions, default=bench_defaults.noise,
                   help="comma-separated noise levels; 'none' for duplicates only")
    b.add_argument("--noise-kind", choices=NOISE_KINDS, default=bench_defaults.noise_kind,
                   help="where flipped labels go: symmetric, pairflip (c to c+1) or confusable (to the class a "
                        "short warm-up confuses each class with most)")
    b.add_argument("--duplicates", type=int, default=bench_defaults.duplicates,
                   help="duplicate pairs with conflicting labels (default about 0.5%% of N, at most 250; 0: none)")
    b.add_argument("--seeds", type=_integers, default=bench_defaults.seeds, help="comma-separated seeds")
    b.add_argument("--epochs", type=int, default=bench_defaults.epochs)
    b.add_argument("--model", default=bench_defaults.model, help="small-cnn | resnet18 | auto")
    b.add_argument("--baselines", choices=BASELINE_SETS, default=bench_defaults.baselines,
                   help="fast leaves out the slow input-loss curvature baseline")
    b.add_argument("--subset", type=int, default=bench_defaults.subset,
                   help="a seeded random subset of N training samples")
    b.add_argument("--clean-at", type=_fractions, default=bench_defaults.clean_at,
                   help="noise levels at which to retrain after cleaning (default: every level; 'none')")
    b.add_argument("--folds", type=int, default=bench_defaults.folds,
                   help="cross-validation folds for confident learning")
    b.add_argument("--device", default=bench_defaults.device)
    b.add_argument("--out", default=None, help="output folder (default bench-results/<data>); "
                                               "re-running with the same settings resumes it")
    b.add_argument("--report-only", action="store_true",
                   help="train nothing: write the results from the cells finished so far")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    im = sub.add_parser("import", help="make a run folder from per-epoch losses saved by any framework "
                                       "(Keras, JAX, a notebook)")
    im.add_argument("--out", required=True, help="run folder to create")
    im.add_argument("--samples", default=None,
                    help="CSV with columns path (or filepath/filename/image; or sample_id) and label; "
                         "optional true_label")
    im.add_argument("--losses", default=None, help="per-sample loss of every epoch: .npy/.csv/.parquet, samples x "
                                                   "epochs (or transposed), or a long table index,epoch,loss")
    im.add_argument("--probabilities", default=None,
                    help="softmax probabilities: samples x classes (their mean) or samples x epochs x classes")
    im.add_argument("--array", action="append", default=[], metavar="FIELD=FILE",
                    help="another per-epoch array (correct, margin, p_given, p_max, eval_loss); repeatable")
    im.add_argument("--from", dest="from_dir", default=None,
                    help="a folder written by `export --format arrays` (samples.csv, arrays/, probabilities.npy, ...)")
    im.add_argument("--images", default=None, help="uint8 images, samples x H x W [x C] .npy, for the dashboard")
    im.add_argument("--embeddings", default=None, help="samples x D features .npy, for near-duplicate search")
    im.add_argument("--root", default=None, help="folder relative image paths start from (default: the CSV's)")
    im.add_argument("--classes", default=None,
                    help="class names in label order: comma-separated, or a text file with one per line")
    im.add_argument("--model", default="external", help="model name to record")

    a = sub.add_parser("app", help="start the dashboard (streamlit run app.py on 127.0.0.1, no usage statistics)")
    a.add_argument("--runs", default=None, help="folder of run folders the dashboard lists (default ./runs)")
    a.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="passed on to `streamlit run`, e.g. --server.port 8502")

    ex = sub.add_parser("export", help="write a run's cleaned labels and scores for other tools")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--format", default="csv",
                    help="comma-separated: csv (cleaned labels), imagefolder (cleaned tree of links), "
                         "cleanlab (label_issues.csv), fiftyone (fiftyone_fields.json), arrays (raw arrays for "
                         "`import`)")
    ex.add_argument("--out", default=None, help="output folder (default RUN/export)")
    ex.add_argument("--no-dropped", action="store_true", help="leave dropped samples out of the cleaned CSV")

    m = sub.add_parser("memorization", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="estimate memorisation by subset trainings (Feldman & Zhang) and compare every "
                            "score of one ordinary run against it")
    m.add_argument("--out", default=None,
                   help="the ordinary run to compare: an existing run folder, or where to train it first "
                        "(with --eval-pass); default runs/<data>-memorization")
    m.add_argument("--data", default=None, help="data source of the run to train (as for train; default demo)")
    m.add_argument("--epochs", type=int, default=None,
                   help="epochs of the run to train (default: the source's, as for train)")
    m.add_argument("--inject-noise", type=_fraction, default=None, help="as for train")
    m.add_argument("--inject-duplicates", type=int, default=None, help="as for train")
    m.add_argument("--subset", type=int, default=None, help="as for train")
    m.add_argument("--train-seed", type=int, default=None, help="seed of the run to train (default 0)")
    m.add_argument("--models", type=int, default=200, help="subset trainings K (hundreds for a stable estimate)")
    m.add_argument("--fraction", type=float, default=0.5, help="share of the training set each model trains on")
    m.add_argument("--seed", type=int, default=0, help="seed of the subsets and of the models")
    m.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                   help="models trained at once, each in its own process")
    m.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    m.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    m.add_argument("--quiet", action="store_true", help="no progress output")

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


def main(argv: list[str] | None = None, *, prog: str = "python -m csl_core") -> int:
    """Run the command line with ``argv`` (default ``sys.argv``); returns the exit status: 0, 2 for
    input a person must fix (the message says what), 130 when interrupted.
    """
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "app":  # everything it does not know goes to streamlit
        args.streamlit_args = [*unknown, *args.streamlit_args]
    try:
        return COMMANDS[args.command](args)
    except (DataError, RunError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 130


def cmd_train(args) -> int:
    """``train``: train a run folder (or continue it with ``--resume``) and summarise it."""
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    fine_tunes = args.pretrained or args.weights is not None
    out = args.out
    rank = int(os.environ.get("RANK", "0"))
    if out is None and launched_distributed():
        raise ValueError("under torchrun every rank must write to the same run folder: pass --out PATH")
    if out is None:
        import time
        stem = args.data.split(":", 1)[0]
        out = str(Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    finetune = {"epochs": FINETUNE_EPOCHS, "lr": FINETUNE_LR} if fine_tunes else {}
    given = dict(epochs=args.epochs, model=args.model, batch_size=args.batch_size, lr=args.lr)
    config = TrainConfig.for_source(args.data, **{**finetune, **{k: v for k, v in given.items() if v is not None}},
                                    schedule=args.schedule, seed=args.seed, eval_pass=args.eval_pass,
                                    inject_noise=args.inject_noise, noise_kind=args.noise_kind,
                                    noise_map=args.noise_map, inject_duplicates=args.inject_duplicates,
                                    subset=args.subset, image_size=args.image_size, augment=args.augment,
                                    device=args.device, amp=args.amp, num_workers=args.workers,
                                    compile=args.compile, download=args.download, pretrained=args.pretrained,
                                    weights=args.weights)
    quiet = args.quiet or rank != 0  # under torchrun, rank 0 speaks for all
    result = train(config, out, resume=args.resume, callbacks=_ProgressCallbacks(quiet), progress=not quiet)
    if rank != 0:
        return 0
    print(f"run folder: {result.run.path}")
    if not args.quiet:
        _print_info(result.run)
    return 0


def cmd_scores(args) -> int:
    """``scores``: print the top samples by a score (highest suspicion first), optionally every
    sample to a CSV file.
    """
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
    """``info``: summarise a run folder."""
    _print_info(RunStore(args.run))
    return 0


def cmd_duplicates(args) -> int:
    """``duplicates``: print the duplicate groups of a run, ranked by their highest CSL, and
    where duplicates were injected, how many were found.
    """
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
    """``bench``: run (or resume) the benchmark plan and print its report."""
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


EXPORT_FORMATS = ("csv", "imagefolder", "cleanlab", "fiftyone", "arrays")


def cmd_export(args) -> int:
    from .run.export import export_run
    from .run.interop import export_interop

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown or args.format!r}; known: {', '.join(EXPORT_FORMATS)}")
    store = RunStore(args.run)
    out = Path(args.out) if args.out else store.path / "export"
    if "csv" in formats or "imagefolder" in formats:
        result = export_run(store.path, include_dropped=not args.no_dropped, imagefolder="imagefolder" in formats,
                            out_dir=out)
        print(f"wrote {result.rows} rows to {result.csv_path}")
        if result.tree_path is not None:
            print(f"wrote the cleaned ImageFolder tree {result.tree_path}")
    for file in export_interop(store.path, out, label_issue_table="cleanlab" in formats,
                               fiftyone="fiftyone" in formats, arrays="arrays" in formats):
        print(f"wrote {file}")
    return 0


def cmd_import(args) -> int:
    from .run.interop import IMPORT_FIELDS, import_run

    files: dict = {"samples_file": args.samples, "losses_file": args.losses, "probabilities_file": args.probabilities,
                   "images_file": args.images, "embeddings_file": args.embeddings}
    arrays = {}
    classes = None
    if args.from_dir:
        folder = Path(args.from_dir)
        if not (folder / "samples.csv").is_file():
            raise ValueError(f"{folder} has no samples.csv; --from takes a folder written by `export --format arrays`")
        defaults = {"samples_file": folder / "samples.csv", "losses_file": folder / "arrays" / "loss.npy",
                    "probabilities_file": folder / "probabilities.npy", "images_file": folder / "images.npy",
                    "embeddings_file": folder / "embeddings.npy"}
        for key, file in defaults.items():
            if files[key] is None and file.is_file():
                files[key] = file
        arrays = {f: folder / "arrays" / f"{f}.npy" for f in IMPORT_FIELDS
                  if f != "loss" and (folder / "arrays" / f"{f}.npy").is_file()}
        if (folder / "classes.txt").is_file():
            classes = (folder / "classes.txt").read_text().splitlines()
    for item in args.array:
        field, sep, file = item.partition("=")
        if not sep or not file:
            raise ValueError(f"--array {item!r}: expected FIELD=FILE, e.g. correct=correct.npy")
        arrays[field.strip()] = file
    if files["samples_file"] is None or files["losses_file"] is None:
        raise ValueError("import needs --samples and --losses (or --from an exported folder)")
    if args.classes:
        given = Path(args.classes)
        classes = (given.read_text().splitlines() if given.is_file()
                   else [c.strip() for c in args.classes.split(",")])
        classes = [c for c in classes if c]
    store = import_run(args.out, array_files=arrays, root=args.root, classes=classes, model=args.model, **files)
    print(f"run folder: {store.path}")
    _print_info(store)
    return 0


def app_path() -> Path:
    """The dashboard's ``app.py``: beside ``csl_core`` in a checkout or an editable install, else the copy a
    wheel installs as package ``csl_clean_app``."""
    beside = Path(__file__).resolve().parents[1] / "app.py"
    if beside.is_file():
        return beside
    import importlib.util

    spec = importlib.util.find_spec("csl_clean_app")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / "app.py").is_file():
            return Path(folder) / "app.py"
    raise RunError("the dashboard (app.py) is not installed beside csl_core; reinstall with `pip install csl-clean`")


def app_command(streamlit_args: list[str]) -> list[str]:
    """The ``streamlit run`` command line of ``csl-clean app``: local address and no usage statistics unless
    the arguments say otherwise."""
    defaults = {"--server.address": "127.0.0.1", "--browser.gatherUsageStats": "false"}
    given = {arg.split("=", 1)[0] for arg in streamlit_args}
    extra = [item for key, value in defaults.items() if key not in given for item in (key, value)]
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), *extra, *streamlit_args]


def cmd_app(args) -> int:
    """Start the dashboard. On POSIX this process becomes the Streamlit server (``exec``), so that a signal
    sent to ``csl-clean app`` (Ctrl-C, a service manager's stop) reaches the server and leaves no orphan."""
    import subprocess

    env = dict(os.environ)
    if args.runs:
        env["CSL_RUNS_DIR"] = str(Path(args.runs).resolve())
    command = app_command([a for a in args.streamlit_args if a != "--"])
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, env)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def console_main() -> None:
    """The ``csl-clean`` console script: ``csl-clean train ...``, ``csl-clean app``, and every other command."""
    sys.exit(main(prog="csl-clean"))


def cmd_memorization(args) -> int:
    import time

    import torch

    from .engine.memorization import estimate_memorization

    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)  # the ordinary run trains here with as many threads as each model
    out = Path(args.out or Path("runs") / f"{(args.data or 'demo').split(':', 1)[0]}-memorization")
    reference_wall = None
    if (out / "meta.json").is_file():
        store = RunStore(out)
        options = {"--epochs": args.epochs, "--inject-noise": args.inject_noise, "--subset": args.subset,
                   "--inject-duplicates": args.inject_duplicates, "--train-seed": args.train_seed}
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            raise ValueError(f"{out} is already a run, and {', '.join(given)} describe a run to train: leave them "
                             "out to estimate against it, or pass another --out")
        if args.data is not None and args.data != store.meta["source"]:
            raise ValueError(f"{out} is a run of {store.meta['source']!r}, not of {args.data!r}; pass another --out")
        if not store.meta.get("completed"):
            raise RunError(f"{out} is not complete; finish it first: python -m csl_core train --out {out} --resume")
    else:
        data = args.data or "demo"
        config = TrainConfig(data=data, epochs=args.epochs or default_epochs(data), seed=args.train_seed or 0,
                             eval_pass=True, inject_noise=args.inject_noise, inject_duplicates=args.inject_duplicates,
                             subset=args.subset, device=args.device)
        began = time.perf_counter()
        train(config, out, callbacks=_ProgressCallbacks(args.quiet), progress=not args.quiet)
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
    print(f"kept in {out / 'memorization'}: estimate.parquet, comparison.json")
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


COMMANDS = {"app": cmd_app, "train": cmd_train, "scores": cmd_scores, "info": cmd_info, "duplicates": cmd_duplicates,
            "bench": cmd_bench, "bench-real": cmd_bench_real, "import": cmd_import, "export": cmd_export,
            "memorization": cmd_memorization}
