"""Train a tiny Vision Transformer with Hugging Face's Trainer on the demo digits and write a run folder
the dashboard opens. The model is built from a config (random weights), so nothing is downloaded.

    pip install 'csl-clean[hf]'                  # or: pip install transformers accelerate
    python examples/huggingface_demo.py --out runs/hf-demo
    torchrun --nproc_per_node 2 examples/huggingface_demo.py --out runs/hf-ddp   # DDP: one run folder
    csl-clean app                                # then pick runs/hf-demo in the sidebar

The only CSL-specific parts: each example carries its dataset position under ``"index"``, the Trainer is
``CSLTrainer`` (``Trainer`` with a per-sample ``compute_loss``) and ``CSLRecorder`` is among its callbacks.
For a pretrained checkpoint, load it with ``AutoModelForImageClassification.from_pretrained(...)`` instead.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

from csl_core.data import build_training_set
from csl_core.integrations.huggingface import CSLRecorder, CSLTrainer


class DictDataset(torch.utils.data.Dataset):
    """``{"pixel_values": (C, H, W) float, "labels": int, "index": int}`` per example."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = images.float().div(255.0).sub(0.5).div(0.5)  # (N, C, H, W), in [-1, 1]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i], "labels": self.labels[i], "index": i}


def tiny_vit(image_size: int, channels: int, classes: list[str]) -> ViTForImageClassification:
    config = ViTConfig(image_size=image_size, patch_size=2, num_channels=channels, hidden_size=64,
                       num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=len(classes),
                       id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
    return ViTForImageClassification(config)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/hf-demo", help="run folder to create")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is available")
    args = parser.parse_args(argv)

    training_set = build_training_set("demo", seed=args.seed)  # digits with 5% injected label noise
    images = training_set.source.images[training_set.image_index]  # (N, H, W, C) uint8, a copy
    dataset = DictDataset(torch.from_numpy(images).permute(0, 3, 1, 2), torch.tensor(training_set.labels))
    torch.manual_seed(args.seed)
    model = tiny_vit(images.shape[1], images.shape[3], training_set.classes)
    recorder = CSLRecorder(args.out, classes=training_set.classes, samples=training_set.samples, images=images,
                           model_name="vit-tiny")
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer wants an output_dir; the run folder is --out
        training_args = TrainingArguments(output_dir=scratch, num_train_epochs=args.epochs,
                                          per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                                          lr_scheduler_type="cosine", warmup_steps=20, weight_decay=0.01,
                                          save_strategy="no", report_to=[], logging_strategy="no",
                                          disable_tqdm=True, seed=args.seed, use_cpu=args.cpu,
                                          dataloader_num_workers=0, ddp_find_unused_parameters=False)
        CSLTrainer(model=model, args=training_args, train_dataset=dataset, callbacks=[recorder]).train()
    print(f"run folder: {args.out}")
    return Path(args.out)


if __name__ == "__main__":
    main()
