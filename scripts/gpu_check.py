"""Does recording every sample's loss cost anything on a GPU? Epoch time with the tracker on and off.

CIFAR-sized synthetic data (3x32x32, 10 classes) and the CIFAR ResNet-18, trained the way
``csl_core.engine.train`` trains (uint8 batches pinned and copied with ``non_blocking``, augmentation on the
device, bf16 autocast where supported, channels_last). Epochs with and without the tracker are
interleaved (on/off, then off/on, ...) so that clock and thermal drift fall on both sides; the
report gives the medians and their ratio (target: at most 1.01). Then a few training steps with the
tracker run under ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation in the step
fails the check.

    python scripts/gpu_check.py            # one GPU, about 1-3 minutes on an H100
    python scripts/gpu_check.py --cpu      # a tiny version on the CPU (small CNN), to try the script

Without CUDA and without ``--cpu`` it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from csl_core.config import TrainConfig
from csl_core.data import IndexedDataset
from csl_core.engine.models import build_model
from csl_core.engine.preprocess import Preprocess
from csl_core.engine.step import train_step
from csl_core.engine.tracker import CSLTracker
from csl_core.engine.train import autocast_dtype, build_optimizer, make_loader

TARGET_RATIO = 1.01


def synthetic_cifar(samples: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, 32, 32, 3)`` images whose mean colour depends on the class, so the loss falls."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    palette = rng.integers(40, 216, (classes, 1, 1, 3))
    images = np.clip(palette[labels] + rng.normal(0, 40, (samples, 32, 32, 3)), 0, 255).astype(np.uint8)
    return images, labels


class Bench:
    """The trainer's step, with the tracker switchable."""

    def __init__(self, args, device: torch.device):
        self.device = device
        images, labels = synthetic_cifar(args.samples)
        self.dataset = IndexedDataset(images, np.arange(len(labels)), labels)
        self.classes = 10
        cuda = device.type == "cuda"
        self.channels_last = cuda
        torch.manual_seed(0)
        self.model = build_model(args.model, in_channels=3, num_classes=self.classes).to(
            device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.preprocess = Preprocess([0.5] * 3, [0.25] * 3, augment=True, flip=True, pad=4, device=device,
                                     channels_last=self.channels_last)
        self.batch_size = args.batch_size
        steps = -(-args.samples // args.batch_size)
        config = TrainConfig(batch_size=args.batch_size, lr=0.05, schedule="constant", epochs=1)
        self.optimizer, self.scheduler = build_optimizer(self.model, config, steps)
        self.amp_dtype = autocast_dtype(device, None)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.tracker = CSLTracker(args.samples, self.classes, device=device, keep_history=False)
        self.workers = args.workers
        self.epoch = 0

    def loader(self):
        self.epoch += 1
        self.preprocess.seed(self.epoch)
        return make_loader(self.dataset, batch_size=self.batch_size, shuffle=True, seed=self.epoch,
                           num_workers=self.workers, pin_memory=self.device.type == "cuda")

    def step(self, x, y, index, *, track: bool) -> None:
        """The shipped training step (``engine.step.train_step``), on the device; the tracker on or off."""
        device = self.device
        x = self.preprocess(x.to(device, non_blocking=True), train=True)
        y = y.to(device, non_blocking=True)
        train_step(self.forward, x, y, self.optimizer, self.scheduler, tracker=self.tracker if track else None,
                   index=index, scaler=self.scaler, amp_dtype=self.amp_dtype)

    def epoch_seconds(self, *, track: bool) -> float:
        self.model.train()
        _synchronize(self.device)
        began = time.perf_counter()
        for x, y, index in self.loader():
            self.step(x, y, index, track=track)
        if track:
            self.tracker.end_epoch()  # the one copy to the host per epoch belongs to the tracker's cost
        _synchronize(self.device)
        return time.perf_counter() - began

    def sync_check(self, steps: int) -> str | None:
        """``None`` if ``steps`` training steps with the tracker make no host synchronisation."""
        batches = iter(self.loader())
        self.step(*next(batches), track=True)  # warm-up: allocator, cuDNN autotuning
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _, (x, y, index) in zip(range(steps), batches):
                self.step(x, y, index, track=True)
        except RuntimeError as e:
            return str(e).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="a tiny version on the CPU (small CNN, 1024 samples)")
    parser.add_argument("--samples", type=int, default=None, help="synthetic samples (default 50000; --cpu 1024)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 512 (--cpu 128)")
    parser.add_argument("--model", default=None, help="resnet18 (default) | small-cnn (default with --cpu)")
    parser.add_argument("--pairs", type=int, default=5, help="timed epochs with and without the tracker, each")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--sync-steps", type=int, default=20, help="training steps under the sync check")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    if not args.cpu and not torch.cuda.is_available():
        print("no GPU: CUDA is not available here, so there is nothing to measure. "
              "Run this on a machine with an NVIDIA GPU, or pass --cpu for a tiny version on the CPU.")
        return 0
    device = torch.device("cpu" if args.cpu else "cuda")
    args.samples = args.samples or (1024 if args.cpu else 50000)
    args.batch_size = args.batch_size or (128 if args.cpu else 512)
    args.model = args.model or ("small-cnn" if args.cpu else "resnet18")

    started = time.perf_counter()
    bench = Bench(args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device     {name}; torch {torch.__version__}; amp {bench.amp_dtype}; "
          f"channels_last {bench.channels_last}; compile {args.compile}")
    print(f"workload   {args.model}, {args.samples} synthetic 3x32x32 samples, batch {args.batch_size}, "
          f"{args.pairs} epochs with and {args.pairs} without the tracker, interleaved")
    bench.epoch_seconds(track=True)  # warm-up: allocator, cuDNN autotuning, compilation
    bench.epoch_seconds(track=False)
    on, off = [], []
    for pair in range(args.pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        for track in order:
            (on if track else off).append(bench.epoch_seconds(track=track))
        print(f"pair {pair + 1}/{args.pairs}  on {on[-1]:.3f}s  off {off[-1]:.3f}s", flush=True)
    median_on, median_off = statistics.median(on), statistics.median(off)
    ratio = median_on / median_off
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"epoch time tracker on  {median_on:.3f}s (median; {args.samples / median_on:,.0f} samples/s)")
    print(f"epoch time tracker off {median_off:.3f}s (median; {args.samples / median_off:,.0f} samples/s)")
    print(f"ratio on/off           {ratio:.4f}  ({verdict} the target <= {TARGET_RATIO})")

    sync_error: str | None = None
    if device.type == "cuda":
        sync_error = bench.sync_check(args.sync_steps)
        print(f"sync check             {'passed' if sync_error is None else 'FAILED'}: {args.sync_steps} steps "
              "with the tracker under torch.cuda.set_sync_debug_mode('error')"
              + ("" if sync_error is None else f"; {sync_error}"))
    else:
        print("sync check             skipped (needs CUDA)")
    total = time.perf_counter() - started
    print(f"total                  {total:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": name, "torch": torch.__version__, "model": args.model, "samples": args.samples,
            "batch_size": args.batch_size, "amp": str(bench.amp_dtype), "compile": args.compile,
            "epoch_seconds_on": on, "epoch_seconds_off": off, "median_on": median_on,
            "median_off": median_off, "ratio": ratio, "target_ratio": TARGET_RATIO,
            "sync_check": None if device.type != "cuda" else (sync_error is None), "sync_error": sync_error,
            "total_seconds": total}, indent=2))
    return 0 if sync_error is None else 1


if __name__ == "__main__":
    sys.exit(main())
