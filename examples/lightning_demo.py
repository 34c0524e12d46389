"""Train a small CNN with PyTorch Lightning on the demo digits and write a run folder the dashboard opens.

    pip install 'csl-clean[lightning]'            # or: pip install pytorch-lightning
    python examples/lightning_demo.py --out runs/lightning-demo
    csl-clean app                                 # then pick runs/lightning-demo in the sidebar

The only CSL-specific parts: the dataset yields each sample's index, ``training_step`` returns the
per-sample losses and logits besides the mean loss, and ``CSLCallback`` is passed to the Trainer.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from csl_core.data import build_training_set
from csl_core.engine.models import SmallCNN
from csl_core.integrations.lightning import CSLCallback, pl


class DigitsModule(pl.LightningModule):
    """A small CNN on uint8 ``(B, C, H, W)`` images, trained with SGD on the mean cross-entropy."""

    def __init__(self, in_channels: int, num_classes: int, lr: float = 0.05):
        super().__init__()
        self.net = SmallCNN(in_channels, num_classes)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)  # (B, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x.float() / 255.0)  # (B, 128)

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        logits = self(x)
        losses = F.cross_entropy(logits, y, reduction="none")  # one loss per sample: what CSL sums
        return {"loss": losses.mean(), "losses": losses, "logits": logits, "targets": y, "index": index}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loader(dataset, *, batch_size: int, seed: int, shuffle: bool = True) -> torch.utils.data.DataLoader:
    """Batches of ``(x, y, index)``; the shuffle order depends on ``seed`` only."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.no_grad()
def embeddings_of(module: DigitsModule, dataset) -> torch.Tensor:
    """Penultimate-layer features of every sample, in index order (for the duplicate finder)."""
    module.eval()
    return torch.cat([module.embed(x.to(module.device)).cpu()
                      for x, _, _ in loader(dataset, batch_size=512, seed=0, shuffle=False)])


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/lightning-demo", help="run folder to create")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", help="auto | cpu | gpu | mps")
    parser.add_argument("--devices", type=int, default=1, help="processes (DDP with more than one)")
    args = parser.parse_args(argv)

    training_set = build_training_set("demo", seed=args.seed)  # digits with 5% injected label noise
    dataset = training_set.dataset()
    torch.manual_seed(args.seed)
    module = DigitsModule(training_set.source.channels, len(training_set.classes))
    callback = CSLCallback(args.out, classes=training_set.classes, samples=training_set.samples,
                           images=training_set.source.images[training_set.image_index],
                           embeddings=lambda m: embeddings_of(m, dataset).numpy(), model_name="small-cnn")
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
                         strategy="ddp" if args.devices > 1 else "auto", callbacks=[callback],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True)
    trainer.fit(module, loader(dataset, batch_size=args.batch_size, seed=args.seed))
    if trainer.is_global_zero:
        print(f"run folder: {args.out}")
    return Path(args.out)


if __name__ == "__main__":
    main()
