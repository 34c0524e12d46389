"""Models: a small CNN that trains fast on CPU, a compact airbench-style CNN for natural images, and
ResNet-18 adapted to small images.

All expose ``embed(x)`` (the penultimate layer, used for near-duplicate search) and
``forward(x) = head(embed(x))``.
"""
from __future__ import annotations

import torch
from torch import nn

MODELS = ("small-cnn", "airbench", "resnet18")


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers; a few seconds an epoch on CPU for 28x28 data."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, embed_dim: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, num_classes)


class AirbenchCNN(nn.Module):
    """A compact CNN after Keller Jordan's airbench: a 2x2 stem, then three blocks of (conv, max-pool,
    batch norm, GELU, conv, batch norm, GELU), global max-pool and a bias-free linear head scaled by 1/9.

    On CIFAR-10N it gave the best detection per CPU minute of the models measured (see
    docs/bench/cifar10n.md); about 0.6 M parameters at the default widths.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (64, 128, 128)):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2, ceil_mode=True),
                nn.BatchNorm2d(c_out), nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())

        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 24, 2, padding=0), nn.GELU(),
            block(24, a), block(a, b), block(b, c),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = _Scaled(nn.Linear(c, num_classes, bias=False), 1 / 9)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, num_classes)


class _Scaled(nn.Module):
    """A layer whose output is multiplied by a constant (airbench's small initial logits)."""

    def __init__(self, layer: nn.Module, scale: float):
        super().__init__()
        self.layer, self.scale = layer, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * self.scale


class ResNet18Small(nn.Module):
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool (the CIFAR recipe)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.head = net.fc
        net.fc = nn.Identity()
        self.body = net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def resolve_model_name(name: str, image_size: int) -> str:
    """``auto`` picks the small CNN for images up to 64 px and ResNet-18 for larger ones."""
    if name == "auto":
        return "small-cnn" if image_size <= 64 else "resnet18"
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (or auto)")
    return name


def build_model(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    if name == "small-cnn":
        return SmallCNN(in_channels, num_classes)
    if name == "airbench":
        return AirbenchCNN(in_channels, num_classes)
    if name == "resnet18":
        return ResNet18Small(in_channels, num_classes)
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
