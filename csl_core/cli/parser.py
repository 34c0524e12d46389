"""The command line's parser: every subcommand and option, with defaults read from the configs and the
sources table."""
from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..analysis.crops import CROP_MAX_DISTANCE
from ..analysis.duplicate_choice import DEFAULT_KEEP, KEEP_POLICIES
from ..analysis.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
from ..analysis.scores import DEFAULT_RANKING, SCORES
from ..bench.planning import BASELINE_SETS, BenchConfig
from ..config import FINETUNE_EPOCHS, FINETUNE_LR, SCHEDULES, TrainConfig
from ..data import NOISE_KINDS, SOURCES
from ..engine.names import BACKBONES


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Says an option's default once, as a person writes it: not where its help already says it, not for a
    default of None, False or nothing, and a tuple as "1,2"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (tuple, list)) and not default)):
            return text
        shown = ",".join(str(v) for v in default) if isinstance(default, (tuple, list)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _fractions(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    return tuple(_fraction(part) for part in text.split(",") if part.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


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
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Find mislabeled and duplicate images by Cumulative Sample "
                                                 "Loss (CSL) from one training run.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add(sub)
    return parser


def add_train(sub) -> None:
    """The ``train`` command's options."""
    train_defaults = TrainConfig()
    sources = " | ".join(kind.usage for kind in SOURCES.values())
    own_epochs = ", ".join(f"{name} {kind.epochs}" for name, kind in SOURCES.items() if kind.epochs)
    t = sub.add_parser("train", help="train a model and record every sample's loss each epoch",
                       formatter_class=DefaultsHelp)
    t.add_argument("--data", default=train_defaults.data, help=f"data source: {sources}")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default {train_defaults.epochs}; {own_epochs}; fine-tuning "
                        f"{FINETUNE_EPOCHS})")
    t.add_argument("--model", default=None,
                   help=f"small-cnn | airbench | resnet18 | auto (small CNN up to 64 px, ResNet-18 above); the "
                        f"two CNNs also at another width, e.g. airbench-x2 (twice the channels); default "
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


def add_scores(sub) -> None:
    """The ``scores`` command's options."""
    s = sub.add_parser("scores", help="rank a run's samples by a score",
                       description="Rank a run's samples by a score, most suspicious first. Where the run's labels "
                                   "were flipped on purpose (--inject-noise, a benchmark's known noisy labels), the "
                                   "column injected_mislabeled says whether each sample's label was one of them "
                                   "(the truth the detection is measured against); runs of one's own data have no "
                                   "such column.")
    s.add_argument("run", help="run folder")
    s.add_argument("--by", default=None, metavar="SCORE",
                   help="score to rank by (default: " + " if the run has it, else ".join(DEFAULT_RANKING)
                        + "): " + ", ".join(SCORES))
    s.add_argument("--top", type=int, default=None, metavar="N",
                   help="the N most suspicious samples: the rows to print (20 if not given) and, with --csv, to "
                        "write (every sample if not given)")
    s.add_argument("--csv", default=None, help="write the samples' scores to this CSV file, most suspicious first")


def add_info(sub) -> None:
    """The ``info`` command's options."""
    i = sub.add_parser("info", help="summarise a run: data, model, epochs, timings, detection quality")
    i.add_argument("run", help="run folder")


def add_audit(sub) -> None:
    """The ``audit`` command's options."""
    a = sub.add_parser("audit", help="make the count of wrong labels honest: write the questions of an audit, "
                                     "then record a person's answers and show the count they give")
    a.add_argument("run", help="run folder")
    a.add_argument("--out", default=None,
                   help="write the questions (a CSV with an empty answer column: fill it with right, wrong or the "
                        "true class name) to this file")
    a.add_argument("--size", type=int, default=100, help="how many questions (40 gives a rough count, 100 a firm one)")
    a.add_argument("--seed", type=int, default=None,
                   help="which random sample the audit asks about (default: the run's own, as on the dashboard)")
    a.add_argument("--answers", default=None,
                   help="a filled-in questions file: its answers are recorded as decisions (right: keep, a class "
                        "name: relabel, wrong: drop) and the count is estimated again from them")


def add_duplicates(sub) -> None:
    """The ``duplicates`` command's options."""
    d = sub.add_parser("duplicates", help="exact and near-duplicate groups, label conflicts flagged, ranked by CSL")
    d.add_argument("run", help="run folder")
    d.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"two pictures are near duplicates when their distance (aligned: one may be blurred or "
                        f"cropped) is at most this share of the distance to their 10th nearest "
                        f"(default {DEFAULT_THRESHOLD}, picked by "
                        "docs/bench/duplicates.md); exact copies are always grouped")
    d.add_argument("--crop-limit", type=float, default=CROP_MAX_DISTANCE,
                   help="the crop tier: two pictures, one a crop of the other once aligned (zoom and shift), are "
                        "grouped as a possible crop when their distance (1 - correlation) is at most this "
                        f"(default {CROP_MAX_DISTANCE}, picked by docs/bench/duplicates.md; 0: crops left out of the "
                        "search too, which then takes under half the time)")
    d.add_argument("--keep", choices=KEEP_POLICIES, default=DEFAULT_KEEP,
                   help=f"which copy of each group the keep column marks: the lowest CSL (the model agreed with it), "
                        f"the highest resolution or the largest file (read from the run's files), or the first "
                        f"(default {DEFAULT_KEEP})")
    d.add_argument("--csv", default=None, help="write one row per grouped sample to this CSV file")
    d.add_argument("--top", type=int, default=10, help="groups to print")
    d.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS,
                   help=f"nearest neighbours searched per sample (default {DEFAULT_NEIGHBOURS})")
    d.add_argument("--embedding-neighbours", action="store_true",
                   help="also search each sample's nearest neighbours by the run's embeddings and save them "
                        "(the focus review shows them; it does not search runs above 200,000 samples itself)")


def add_bench(sub) -> None:
    """The ``bench`` command's options."""
    bench_defaults = BenchConfig()
    b = sub.add_parser("bench", help="benchmark CSL against every baseline on injected noise and duplicates",
                       formatter_class=DefaultsHelp)
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


def add_import(sub) -> None:
    """The ``import`` command's options."""
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
    im.add_argument("--layout", choices=("samples-epochs", "epochs-samples"), default=None,
                    help="how to read a square array (as many epochs as samples), which is otherwise refused")


def add_app(sub) -> None:
    """The ``app`` command's options."""
    a = sub.add_parser("app", help="start the dashboard (streamlit run app.py on 127.0.0.1, no usage statistics)")
    a.add_argument("--runs", default=None, help="folder of run folders the dashboard lists (default ./runs)")
    a.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="passed on to `streamlit run`, e.g. --server.port 8502")


def add_export(sub) -> None:
    """The ``export`` command's options."""
    ex = sub.add_parser("export", help="write a run's cleaned labels and scores for other tools")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--format", default="csv",
                    help="comma-separated: csv (cleaned labels), imagefolder (cleaned tree of links), "
                         "cleanlab (label_issues.csv), fiftyone (fiftyone_fields.json), arrays (raw arrays for "
                         "`import`)")
    ex.add_argument("--out", default=None, help="output folder (default RUN/export)")
    ex.add_argument("--no-dropped", action="store_true", help="leave dropped samples out of the cleaned CSV")
    ex.add_argument("--cleaning", choices=["suggested"], default=None,
                    help="a dry run: write the files with the suggested cleaning applied on top of your decisions "
                         "(action column relabel / drop), recording nothing in the run; needs --out outside it")


def add_memorization(sub) -> None:
    """The ``memorization`` command's options."""
    m = sub.add_parser("memorization", formatter_class=DefaultsHelp,
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


def add_bench_real(sub) -> None:
    """The ``bench-real`` command's options."""
    r = sub.add_parser("bench-real", help="detection on real label noise: train a noisy label column through the "
                                          "csv: source and score against a trusted column (e.g. CIFAR-10N)",
                       formatter_class=DefaultsHelp)
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
    r.add_argument("--model", default=None,
                   help="model, e.g. airbench-x2 for twice the width (default: the source's recipe)")
    r.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the source's recipe)")
    r.add_argument("--batch-size", type=int, default=None, help="batch size (default: the source's recipe)")
    r.add_argument("--recipe-epochs", type=int, default=None,
                   help="epochs of the recipe's run, augmentation kept (default: the source's recipe)")
    r.add_argument("--subset", type=int, default=None, help="a seeded random subset of N samples")
    r.add_argument("--test", default=None,
                   help="a path,label file of clean test images (paths relative to --root when given)")
    r.add_argument("--cleanlab", action="store_true", help="also confident learning with K-fold training")
    r.add_argument("--folds", type=int, default=3)
    r.add_argument("--clean", action="store_true",
                   help="retrain after dropping / relabelling the top of the default ranking (needs --test)")
    r.add_argument("--cleanings", type=_names, default=("suggested", "outweighs", "drop"),
                   help="comma-separated plans --clean retrains on: suggested (within the count of wrong labels, "
                        "relabel where the suggestion is sure, drop where not), outweighs (the same on every "
                        "sample whose suggestion outweighs its label), drop (drop the count's suspects)")
    r.add_argument("--device", default="auto")
    r.add_argument("--out", required=True, help="output folder (outside the data; reruns reuse finished runs)")
    r.add_argument("--quiet", action="store_true")



@dataclass(frozen=True)
class Command:
    """One command of the command line: ``add`` gives it its subparser and options; ``function`` of the
    ``csl_core.cli`` module ``module`` runs it (imported only after parsing: ``--help`` loads no torch)."""

    name: str
    add: Callable[[object], None]   # given the subparsers of the command line
    module: str
    function: str

    def run(self, args: argparse.Namespace) -> int:
        """Import the command's module now and run it on the parsed ``args``; its exit status."""
        return getattr(importlib.import_module(f"csl_core.cli.{self.module}"), self.function)(args)


#: Every command, in the order ``--help`` lists them: its options and the function that runs it, together.
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("train", add_train, "runs", "cmd_train"),
    Command("scores", add_scores, "runs", "cmd_scores"),
    Command("info", add_info, "runs", "cmd_info"),
    Command("audit", add_audit, "audit", "cmd_audit"),
    Command("duplicates", add_duplicates, "runs", "cmd_duplicates"),
    Command("bench", add_bench, "bench", "cmd_bench"),
    Command("import", add_import, "interop", "cmd_import"),
    Command("app", add_app, "interop", "cmd_app"),
    Command("export", add_export, "interop", "cmd_export"),
    Command("memorization", add_memorization, "bench", "cmd_memorization"),
    Command("bench-real", add_bench_real, "bench", "cmd_bench_real"),
)}
