"""Models: a small CNN that trains fast on CPU, a compact airbench-style CNN for natural images,
ResNet-18 adapted to small images, and torchvision's ImageNet backbones for fine-tuning
(``--model resnet50 --pretrained`` or ``--weights FILE``).

Every model exposes ``embed(x)`` (the penultimate layer, used for near-duplicate search) and
``forward(x) = head(embed(x))``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InputError

# the names live in a module without torch, for the command line's help; importers take them from here too
from .names import BACKBONES, MAX_WIDTH, MODELS, SCALABLE, TORCHVISION_PREFIX  # noqa: F401


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
        """Penultimate-layer features ``(B, embed_dim)`` of normalised images ``(B, C, H, W)``."""
        return self.fc(self.features(x))  # (B, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
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
        """Penultimate-layer features ``(B, 512)`` of normalised images ``(B, C, H, W)``."""
        return self.body(x)  # (B, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.body(x))


class Backbone(nn.Module):
    """A torchvision ImageNet architecture with a new ``num_classes`` head. One-channel images are
    repeated to the three channels the ImageNet weights expect."""

    def __init__(self, name: str, num_classes: int, in_channels: int):
        super().__init__()
        from torchvision.models import get_model

        net = get_model(name, weights=None)
        if hasattr(net, "fc"):  # ResNets
            self.head = nn.Linear(net.fc.in_features, num_classes)
            net.fc = nn.Identity()
        else:  # MobileNet, EfficientNet, ConvNeXt: the last layer of ``classifier``
            self.head = nn.Linear(net.classifier[-1].in_features, num_classes)
            net.classifier[-1] = nn.Identity()
        self.body = net
        self.in_channels = in_channels

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)  # (B, 1, H, W) -> (B, 3, H, W)
        return self.body(x)  # (B, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, num_classes)


def resolve_model_name(name: str, image_size: int, *, pretrained: bool = False) -> str:
    """``auto`` picks the small CNN for images up to 64 px and ResNet-18 for larger ones. Fine-tuning
    (``pretrained``: ImageNet weights or a weights file) takes torchvision's own architecture of the
    name (``auto``: ResNet-18), stored as ``torchvision:<name>``."""
    if pretrained or name.startswith(TORCHVISION_PREFIX):
        base = "resnet18" if name == "auto" else name.removeprefix(TORCHVISION_PREFIX)
        if base not in BACKBONES:
            raise InputError(f"no pretrained backbone {base!r}; known: {', '.join(BACKBONES)}")
        return TORCHVISION_PREFIX + base
    if name == "auto":
        return "small-cnn" if image_size <= 64 else "resnet18"
    if name not in MODELS and split_width(name) is None:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (or auto; "
                         f"{' and '.join(SCALABLE)} also in other widths, e.g. airbench-x2), or with "
                         f"--pretrained: {', '.join(BACKBONES)}")
    return name


def split_width(name: str) -> tuple[str, float] | None:
    """``("airbench", 2.0)`` for ``"airbench-x2"``: a scalable model and its width multiplier (above 0, at
    most ``MAX_WIDTH``); None when ``name`` is not of that form."""
    base, sep, factor = name.rpartition("-x")
    if not sep or base not in SCALABLE:
        return None
    try:
        width = float(factor)
    except ValueError:
        return None
    if not 0 < width <= MAX_WIDTH or factor != factor.strip():
        return None
    return base, width


def _scaled(channels: int, width: float) -> int:
    return max(4, round(channels * width))


def build_model(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """The model a run names (``meta["model"]``: ``small-cnn``, ``airbench`` (either possibly with a width,
    ``airbench-x2``), ``resnet18`` or a torchvision backbone, see
    :func:`resolve_model_name`), freshly initialised, for images of ``in_channels`` channels; it has ``embed``
    and ``head``.
    """
    base, width = split_width(name) or (name, 1.0)
    if base == "small-cnn":
        return SmallCNN(in_channels, num_classes, width=_scaled(32, width))
    if base == "airbench":
        return AirbenchCNN(in_channels, num_classes, widths=tuple(_scaled(c, width) for c in (64, 128, 128)))
    if name == "resnet18":
        return ResNet18Small(in_channels, num_classes)
    if name.startswith(TORCHVISION_PREFIX) and name.removeprefix(TORCHVISION_PREFIX) in BACKBONES:
        return Backbone(name.removeprefix(TORCHVISION_PREFIX), num_classes, in_channels)
    raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}, "
                     f"{', '.join(TORCHVISION_PREFIX + b for b in BACKBONES)}")


def backbone_preset(name: str) -> dict:
    """What the ImageNet weights of backbone ``name`` were trained with, read from torchvision's weights
    metadata (no download): ``{"image_size", "mean", "std", "file"}`` (``file``: the name in the cache)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(name.removeprefix(TORCHVISION_PREFIX)).DEFAULT
    transforms = weights.transforms()
    return {"image_size": int(transforms.crop_size[0]), "mean": list(transforms.mean), "std": list(transforms.std),
            "file": weights.url.rsplit("/", 1)[-1], "url": weights.url}


def backbone_cache_path(name: str) -> Path:
    """Where torch's usual cache (``$TORCH_HOME/hub/checkpoints``) keeps the ImageNet weights of backbone
    ``name``; nothing is downloaded (the file may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone_preset(name)["file"]


def backbone_weights_file(name: str) -> Path:
    """The file holding torchvision's ImageNet weights of backbone ``name`` in torch's usual cache
    (:func:`backbone_cache_path`), downloaded there once when missing."""
    preset = backbone_preset(name)
    cache = backbone_cache_path(name)
    if cache.is_file():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(preset["url"], str(cache), progress=False)
    except (OSError, ValueError) as e:  # URLError is an OSError
        raise ConnectionError(f"could not download the ImageNet weights of {name.removeprefix(TORCHVISION_PREFIX)} "
                              f"({e}); offline? Download {preset['url']} on a connected machine and put it at {cache} "
                              "(torch's cache), or pass --weights FILE") from None
    return cache


def load_backbone_weights(model: nn.Module, name: str, *, weights_file: str | Path | None = None) -> list[str]:
    """Load ImageNet weights into ``model`` (a :class:`Backbone`): from ``weights_file`` (a state dict of
    torchvision's ``name`` architecture), else torchvision's own (:func:`backbone_weights_file`). Read with
    ``weights_only=True``. The ImageNet classifier is not loaded: the head stays new for this run's classes.
    Returns the keys of the file left out."""
    name = name.removeprefix(TORCHVISION_PREFIX)
    file = Path(weights_file) if weights_file is not None else backbone_weights_file(name)
    if not file.is_file():
        raise FileNotFoundError(f"--weights {file}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # an unreadable file, or one that would need unpickling code
        raise InputError(f"{file}: not a plain PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning-style checkpoint
    if not isinstance(state, dict):
        raise InputError(f"{file}: expected a state dict (name -> tensor), got {type(state).__name__}")
    body = model.body.state_dict()
    usable = {key: value for key, value in state.items()
              if key in body and isinstance(value, torch.Tensor) and body[key].shape == value.shape}
    missing = sorted(set(body) - set(usable))
    if missing:
        raise InputError(f"{file}: the weights do not fit torchvision's {name}: {len(missing)} of {len(body)} "
                         f"parameters missing or of another shape, e.g. {missing[:3]}; pass the --model they are for")
    model.body.load_state_dict(usable)
    return sorted(set(state) - set(usable))
