"""The model names the engine builds, without importing torch (the command line's help reads them)."""
from __future__ import annotations

MODELS = ("small-cnn", "airbench", "resnet18")
# The two CNNs come in other widths too: ``airbench-x2`` doubles every layer's channels, ``small-cnn-x0.5``
# halves them (the multiplier is stored in the run's model name, so a resume rebuilds the same network).
SCALABLE = ("small-cnn", "airbench")
MAX_WIDTH = 8.0
# torchvision architectures offered as pretrained backbones; stored in a run as "torchvision:<name>".
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
             "convnext_tiny")
TORCHVISION_PREFIX = "torchvision:"
