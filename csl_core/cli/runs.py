"""Commands on one run: ``train``, ``scores``, ``info`` and ``duplicates``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..engine.distributed import launched_distributed
from ..engine.train import train
from ..errors import InputError
from ..progress import progress_bar
from ..run.files import atomic_write_csv
from ..run.layout import REPORT
from ..run.store import RunError, RunStore, run_problems


class ProgressCallbacks:
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


def cmd_train(args) -> int:
    """``train``: train a run folder (or continue it with ``--resume``) and summarise it."""
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = args.out
    rank = int(os.environ.get("RANK", "0"))
    if out is None and launched_distributed():
        raise InputError("under torchrun every rank must write to the same run folder: pass --out PATH")
    if out is None:
        import time
        stem = args.data.split(":", 1)[0]
        out = str(Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    # Fine-tuning a pretrained backbone replaces the source's from-scratch recipe (TrainConfig.for_source).
    config = TrainConfig.for_source(args.data, epochs=args.epochs, model=args.model, batch_size=args.batch_size,
                                    lr=args.lr, schedule=args.schedule, seed=args.seed, eval_pass=args.eval_pass,
                                    inject_noise=args.inject_noise, noise_kind=args.noise_kind,
                                    noise_map=args.noise_map, inject_duplicates=args.inject_duplicates,
                                    subset=args.subset, image_size=args.image_size, augment=args.augment,
                                    device=args.device, amp=args.amp, num_workers=args.workers,
                                    compile=args.compile, download=args.download, pretrained=args.pretrained,
                                    weights=args.weights)
    quiet = args.quiet or rank != 0  # under torchrun, rank 0 speaks for all
    result = train(config, out, resume=args.resume, callbacks=ProgressCallbacks(quiet), progress=not quiet)
    if rank != 0:
        return 0
    print(f"run folder: {result.run.path}")
    if not args.quiet:
        print_info(result.run)
    return 0


INJECTED = "injected_mislabeled"   # the scores table's name for the injected truth (docs/formats.md)


def cmd_scores(args) -> int:
    """``scores``: print the top samples by a score (highest suspicion first), optionally every
    sample to a CSV file.
    """
    from ..analysis.scores import default_score, suspicion

    store = RunStore(args.run)
    scores = store.scores()
    args.by = args.by or default_score(scores)
    order = np.argsort(-suspicion(scores, args.by), kind="stable")
    ranked = scores.iloc[order]
    # The injected truth (a label flipped on purpose, --inject-noise or a benchmark's known noisy labels) is
    # shown under a name that says so, and only where some label was flipped: elsewhere it means nothing.
    if "is_mislabeled" in ranked:
        injected = ranked["is_mislabeled"].to_numpy(bool).any()
        ranked = (ranked.rename(columns={"is_mislabeled": INJECTED}) if injected
                  else ranked.drop(columns="is_mislabeled"))
    if "suggested_label" in ranked:   # as the dashboard shows it: the class name beside its index
        ranked = ranked.assign(suggested_class=np.asarray(store.classes, dtype=object)[
            ranked["suggested_label"].to_numpy(np.int64)])
    if args.csv:
        written = ranked if args.top is None else ranked.head(args.top)
        path = Path(args.csv).resolve()
        atomic_write_csv(path, written.reset_index())
        print(f"wrote {len(written)} rows to {path}")
    columns = [c for c in ("sample_id", "class_name", "csl", "csl_rank", args.by, "suggested_class",
                           "suggested_confidence", INJECTED) if c in ranked.columns]
    columns = list(dict.fromkeys(columns))
    print(ranked[columns].head(20 if args.top is None else args.top).to_string())
    return 0


def cmd_info(args) -> int:
    """``info``: summarise a run folder; a damaged one (the check every page shares: samples.csv changed since the
    run was made, arrays of the wrong shape, ...) is said instead, never summarised as healthy."""
    store = RunStore(args.run)
    problems = run_problems(store.path)
    if problems:
        raise RunError(f"{store.path} is damaged: " + " ".join(problems))
    print_info(store)
    return 0


def cmd_duplicates(args) -> int:
    """``duplicates``: print the duplicate groups of a run, ranked by their highest CSL, and
    where duplicates were injected, how many were found.
    """
    from ..analysis.duplicates import injected_pair_recall, member_table
    from ..run.duplicate_files import kept_members
    from ..run.duplicates import find_duplicates

    store = RunStore(args.run)
    if args.embedding_neighbours:
        from ..run.duplicates import neighbour_index

        neighbour_index(store, k=args.neighbours, embeddings=True, progress=True)
    report = find_duplicates(store, threshold=args.threshold, crop_limit=args.crop_limit, k=args.neighbours,
                             progress=True)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    groups = report.groups
    samples = store.samples()
    members = member_table(report, samples, kept_members(report, samples, args.keep))
    if args.csv:
        atomic_write_csv(Path(args.csv), members)
        print(f"wrote {len(members)} rows to {Path(args.csv).resolve()}")
    crops = int(groups["kinds"].str.contains("crop").sum()) if len(groups) else 0
    print(f"{len(groups)} duplicate groups at threshold {args.threshold} and crop limit {args.crop_limit} "
          f"({int(groups['exact'].sum())} exact, {crops} possible crop, {int(groups['label_conflict'].sum())} with "
          f"conflicting labels), {len(members)} samples; keep: {args.keep}")
    columns = ["rank", "size", "label_conflict", "kinds", "keep", "csl", "similarity", "sample_id", "class_name"]
    shown = members[members["rank"] <= args.top]
    if len(shown):
        print(shown[columns].to_string(index=False))
    if "duplicate_of" in samples.columns and (samples["duplicate_of"] >= 0).any():
        from ..analysis.metrics import auroc

        found = injected_pair_recall(report.samples["group"].to_numpy(), samples["duplicate_of"].to_numpy(),
                                     groups)
        truth = samples["duplicate_of"].to_numpy() >= 0
        print(f"injected   {found['found_and_flagged']}/{found['pairs']} pairs grouped and flagged "
              f"(recall {found['recall']:.4f}), {found['false_groups']} groups without an injected pair")
        for column in ("csl", "duplicate_score"):
            print(f"AUROC      {column:<15} {auroc(truth, _least_suspicious_nan(report.samples[column])):.4f}"
                  f"  (both members of {found['pairs']} injected pairs)")
    return 0


def print_info(store: RunStore) -> None:
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
        print(f"skipped    {len(skipped)} input(s); listed in {store.path / REPORT}")
    if report.get("test_accuracy") is not None:
        print(f"test acc   {report['test_accuracy']:.4f}")
    if not meta["finished_epochs"]:
        return
    from ..analysis.scores import default_score, suspicion

    scores = store.scores()
    truth = scores["is_mislabeled"].to_numpy(bool) if meta.get("has_ground_truth") else None
    if truth is not None and not 0 < truth.sum() < len(truth):
        truth = None
    _print_standing(store, scores, truth)
    if truth is not None:
        from ..analysis.metrics import auroc
        from ..analysis.scores import SCORES

        headline = [name for name, score in SCORES.items() if score.headline]
        for method in dict.fromkeys([*headline, default_score(scores)]):
            if method in scores.columns:
                print(f"AUROC      {method:<16} {auroc(truth, _least_suspicious_nan(suspicion(scores, method))):.4f}"
                      f"  ({truth.sum()} injected mislabeled samples)")


def _least_suspicious_nan(values) -> np.ndarray:
    """A score with NaN (a sample never seen, a sample in no group) ranked below every finite value."""
    top = np.finfo(np.float64).max
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-top, posinf=top, neginf=-top)


def _decided(store: RunStore, scores) -> dict:
    """The run's effective decisions as ``standing``'s ``actions`` and ``sources`` (keep / relabel / drop /
    undecided per sample, and who made each): a person's answers, which the count rests on beside the model."""
    from ..run.decisions import DecisionLog

    effective = DecisionLog(store.path, read_only=True).effective(len(scores), scores["label"].to_numpy(np.int64))
    return {"actions": effective["action"].to_numpy(object), "sources": effective["source"].to_numpy(object)}


def _print_standing(store: RunStore, scores, truth) -> None:
    """Training accuracy, the estimated noise and the review budget it implies, and the memorised warning."""
    from ..analysis.noise_rate import standing
    from ..analysis.scores import default_score, suspicion

    probabilities = store.probabilities()
    epochs = store.report().get("epochs", [])
    accuracy = epochs[-1].get("accuracy") if epochs else None
    if accuracy is not None:
        print(f"train acc  {accuracy:.4f}  (last epoch, on the given labels)")
    if probabilities is None:
        return
    ranking = default_score(scores)
    where = standing(scores, suspicion(scores, ranking), accuracy, truth, **_decided(store, scores))
    print(f"wrong      {where['text']}; review the top {where['k']} by {ranking}")
    if truth is not None:
        print(f"truth      {where['true_count']} wrong (injected), {where['true_in_top_k']} of them in that top "
              f"{where['k']}")
    if where["memorised"]:
        _print_field("warning", f"training accuracy {accuracy:.1%}: the network has memorised its labels, wrong "
                     "ones included, so their last-epoch loss is low and stops separating them. Rank by csl or "
                     "fused (summed over training), not final_loss.")


def _print_field(name: str, text: str, width: int = 100) -> None:
    """One ``info`` field, its text wrapped under itself (a terminal line, never a 400-character one)."""
    import textwrap

    print(textwrap.fill(text, width, initial_indent=f"{name:<11}", subsequent_indent=" " * 11))
