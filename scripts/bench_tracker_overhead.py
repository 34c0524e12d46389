"""What recording every sample's loss costs: the same training with the tracker on and off.

    python scripts/bench_tracker_overhead.py [--data fashion-mnist] [--subset 20000] [--rounds 4] [--threads N]

One model, one process. Epochs alternate between tracker on and tracker off (on/off, then off/on, ...)
so that drift in machine load and the learning-rate schedule fall on both sides alike. Tracker off is
the trainer's own step without ``tracker.update``; tracker on adds ``update`` in every step and the
once-per-epoch ``end_epoch`` (the host copy) and ``mean_probabilities``, as the trainer calls them.
Writing the run folder is not counted: that is the run store's cost, not the tracker's.

Prints the median epoch time of each mode, their ratio, and the median of the per-round ratios (each
round pairs two adjacent epochs, which cancels slow drift), in wall-clock time and in the process's CPU
time. On a machine shared with other work the wall clock mostly measures the neighbours; CPU time
(``time.process_time``) counts only this process's own work. Uses synthetic 28x28 data when
Fashion-MNIST is not installed. On CPU, where every op runs synchronously, it also times the tracker's
own calls inside the tracker-on epochs: their share of the epoch's CPU time is the overhead with the
neighbours' noise taken out. Prints one JSON object on the last line.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from csl_core.config import TrainConfig
from csl_core.data import DataError, ImageSource, TrainingSet, build_training_set, source_kind
from csl_core.engine.allocator import keep_freed_memory
from csl_core.engine.models import build_model
from csl_core.engine.preprocess import Preprocess, channel_stats
from csl_core.engine.tracker import CSLTracker
from csl_core.engine.train import build_optimizer, make_loader, resolve_device


def synthetic(n: int, seed: int = 0) -> TrainingSet:
    """Ten classes of noisy 28x28 blobs: the same shapes and sizes as Fashion-MNIST."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = [(6 + 4 * (c % 4), 6 + 5 * (c // 4)) for c in range(10)]
    templates = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0) for cy, cx in centres])
    images = np.clip(templates[labels] * 200 + rng.normal(0, 40, (n, 28, 28)), 0, 255).astype(np.uint8)
    source = ImageSource(images, labels, [str(c) for c in range(10)], [f"synthetic-{i}" for i in range(n)])
    samples = pd.DataFrame({"index": np.arange(n), "sample_id": source.ids, "label": labels,
                            "class_name": [str(c) for c in labels], "image_index": np.arange(n)})
    return TrainingSet(spec="synthetic", source=source, samples=samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist", help="any --data source of the CLI; synthetic if missing")
    parser.add_argument("--subset", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of one tracker-on and one tracker-off epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="leave glibc's malloc thresholds as they are (the trainer raises them on CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        training_set = build_training_set(args.data, subset=args.subset, inject_noise=0.0,
                                          inject_duplicates_pairs=0, seed=args.seed)
        data_name = f"{args.data} (subset {len(training_set)})"
    except DataError as e:
        print(f"{e}\nusing synthetic data instead", file=sys.stderr)
        training_set = synthetic(args.subset, args.seed)
        data_name = f"synthetic 28x28 ({len(training_set)})"

    device = resolve_device(args.device)
    # as the trainer does on CPU, unless asked not to
    kept = keep_freed_memory() if device.type == "cpu" and not args.glibc_defaults else False
    torch.manual_seed(args.seed)
    num_classes = len(training_set.classes)
    model = build_model(args.model, in_channels=training_set.source.channels, num_classes=num_classes).to(device)
    mean, std = channel_stats(training_set.source.images)
    height = training_set.source.image_size[0]
    flip = source_kind(args.data).flip
    preprocess = Preprocess(mean, std, augment=True, flip=flip, pad=max(1, height // 8), device=device,
                            channels_last=False)
    dataset = training_set.dataset()
    epochs = 2 * args.rounds + 1  # one warm-up epoch, not timed
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size)
    optimizer, scheduler = build_optimizer(model, config, math.ceil(len(dataset) / args.batch_size))
    tracker = CSLTracker(len(dataset), num_classes, device=device, keep_history=False)
    tracker_cpu_seconds: list[float] = []
    timed = device.type == "cpu"

    def epoch(index: int, track: bool) -> tuple[float, float]:
        loader = make_loader(dataset, batch_size=args.batch_size, shuffle=True, seed=args.seed + index)
        preprocess.seed(args.seed + index)
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        began, began_cpu = time.perf_counter(), time.process_time()
        in_tracker = 0.0
        for x, y, sample_index in loader:
            x = preprocess(x.to(device, non_blocking=True), train=True)
            y = y.to(device, non_blocking=True)
            logits = model(x)
            losses = F.cross_entropy(logits.float(), y, reduction="none")
            if track:
                if timed:
                    t0 = time.process_time()
                tracker.update(sample_index, logits, y, losses)
                if timed:
                    in_tracker += time.process_time() - t0
            optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            optimizer.step()
            scheduler.step()
        if track:
            t0 = time.process_time()
            tracker.end_epoch()
            tracker.mean_probabilities()
            in_tracker += time.process_time() - t0
            tracker_cpu_seconds.append(in_tracker)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began, time.process_time() - began_cpu

    warmup, _ = epoch(0, True)
    print(f"{data_name}, {args.model} on {device}, {torch.get_num_threads()} thread(s); "
          f"malloc thresholds {'raised' if kept else 'glibc defaults'}; warm-up epoch {warmup:.2f}s", file=sys.stderr)
    times: dict[str, dict[bool, list[float]]] = {"wall": {True: [], False: []}, "cpu": {True: [], False: []}}
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for k, track in enumerate(order):
            wall, cpu = epoch(1 + 2 * r + k, track)
            times["wall"][track].append(wall)
            times["cpu"][track].append(cpu)
        print(f"round {r + 1}/{args.rounds}: " + "; ".join(
            f"{clock} on {times[clock][True][-1]:.2f}s off {times[clock][False][-1]:.2f}s "
            f"ratio {times[clock][True][-1] / times[clock][False][-1]:.4f}" for clock in ("wall", "cpu")),
            file=sys.stderr)
    result = {"data": data_name, "model": args.model, "device": str(device), "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "rounds": args.rounds, "malloc_thresholds_raised": kept}
    for clock in ("wall", "cpu"):
        on, off = times[clock][True], times[clock][False]
        paired = [a / b for a, b in zip(on, off)]
        result[clock] = {"median_epoch_s_tracker_on": round(statistics.median(on), 3),
                         "median_epoch_s_tracker_off": round(statistics.median(off), 3),
                         "ratio_of_medians": round(statistics.median(on) / statistics.median(off), 4),
                         "median_paired_ratio": round(statistics.median(paired), 4),
                         "epochs_s_on": [round(t, 3) for t in on], "epochs_s_off": [round(t, 3) for t in off]}
        r = result[clock]
        if clock == "cpu" and timed:
            # the warm-up epoch (index 0) tracked too; compare each on-epoch with its own tracker time
            shares = [t / e for t, e in zip(tracker_cpu_seconds[1:], on)]
            r["tracker_share_of_epoch_cpu"] = round(statistics.median(shares), 5)
        print(f"{clock:>4} time: tracker on {r['median_epoch_s_tracker_on']:.2f}s vs off "
              f"{r['median_epoch_s_tracker_off']:.2f}s an epoch (medians): ratio {r['ratio_of_medians']:.4f}; "
              f"median paired ratio {r['median_paired_ratio']:.4f}", file=sys.stderr)
    if timed:
        print(f"the tracker's own calls: {100 * result['cpu']['tracker_share_of_epoch_cpu']:.2f}% of a tracker-on "
              "epoch's CPU time (median)", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
