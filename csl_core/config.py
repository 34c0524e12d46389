"""A run's settings, free of torch so that a UI can build them without loading it."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from .data import TrainingSet

SCHEDULES = ("onecycle", "step", "constant")
# Fine-tuning a pretrained backbone (--pretrained / --weights): a lower peak learning rate, fewer epochs.
FINETUNE_LR = 0.01
FINETUNE_EPOCHS = 5


def recipe_for(data: str, *, fine_tunes: bool = False) -> dict:
    """The settings a run on ``data`` (a ``--data`` spec) gets unless told otherwise: its source kind's
    recipe in :data:`csl_core.data.SOURCES` (the user's own files and CIFAR get the one that measured best on
    real label noise, docs/bench/cifar10n.md; the demo and Fashion-MNIST keep those their figures were
    measured with).
    Fine-tuning a pretrained backbone (``fine_tunes``) replaces the source's from-scratch recipe: the
    engine's model choice and batch size, ``FINETUNE_EPOCHS`` at peak learning rate ``FINETUNE_LR``."""
    from .data import source_kind

    kind = source_kind(data)  # an unknown kind raises, fine-tuning or not
    if fine_tunes:
        return {"model": TrainConfig.model, "epochs": FINETUNE_EPOCHS, "batch_size": TrainConfig.batch_size,
                "lr": FINETUNE_LR}
    return {name: value for name in ("model", "epochs", "batch_size", "lr")
            if (value := getattr(kind, name)) is not None}


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in ``meta.json`` so that a run can be resumed or repeated."""

    data: str = "demo"
    epochs: int = 15
    model: str = "auto"
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    seed: int = 0
    eval_pass: bool = False
    inject_noise: float | None = None
    noise_kind: str = "symmetric"
    # The class map of pairflip / confusable noise: one target per class (-1: not flipped), or text
    # "shirt:t-shirt,coat:pullover". The trainer turns text into the list, and fills in a confusable
    # map from a short warm-up when none is given, before the run starts (meta.json keeps the list).
    noise_map: list[int] | str | None = None
    inject_duplicates: int | None = None
    subset: int | None = None
    image_size: int | None = None
    augment: bool | None = None
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    num_workers: int = 0
    download: bool = False
    compute_embeddings: bool = True
    pretrained: bool = False
    weights: str | None = None

    @property
    def fine_tunes(self) -> bool:
        """Whether training starts from ImageNet weights (torchvision's, or a local state dict)."""
        return self.pretrained or self.weights is not None

    @classmethod
    def for_source(cls, data: str, **given) -> TrainConfig:
        """The config of a run on ``data``: the source's recipe (:func:`recipe_for`), then every
        setting in ``given`` that is not ``None``."""
        fine_tunes = bool(given.get("pretrained")) or given.get("weights") is not None
        return cls(data=data, **{**recipe_for(data, fine_tunes=fine_tunes),
                                 **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from ``meta.json``'s ``config`` (or any dict); keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_run(cls, values: object, where: str | Path) -> TrainConfig:
        """The config stored in a run folder's ``meta.json``, checked before anything uses it: every
        known field has its declared type, and ``data`` is a valid source spec. A run folder may come
        from someone else, so nothing it names is downloaded (``download`` is off) and the built-in
        readers it may point at never run code (see :class:`csl_core.data.builtin.CifarUnpickler`).
        Raises ``ValueError`` naming ``where`` and the field."""
        from .data import DataError, parse_spec

        if not isinstance(values, dict):
            raise InputError(f"{where}: 'config' is not an object; the run folder is damaged")
        known = {f.name: f.type for f in fields(cls)}
        checked = {}
        for name, value in values.items():
            if name not in known:
                continue
            allowed = _TYPES[known[name]]
            ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
            if not ok:
                raise InputError(f"{where}: config field {name!r} is {value!r}, expected "
                                 f"{' or '.join(t.__name__ for t in allowed)}; the run folder is damaged")
            checked[name] = value
        if isinstance(checked.get("noise_map"), list) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in checked["noise_map"]):
            raise InputError(f"{where}: config field 'noise_map' holds something other than class indices; the run "
                             "folder is damaged")
        config = cls(**checked)
        try:
            parse_spec(config.data)
        except DataError as e:
            raise InputError(f"{where}: {e}") from e
        if "\x00" in config.data:
            raise InputError(f"{where}: the data spec holds a NUL byte; the run folder is damaged")
        config.download = False
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.inject_noise is not None and not 0 <= self.inject_noise < 1:
            raise InputError(f"--inject-noise must be a fraction in [0, 1), got {self.inject_noise}")
        from .data import NOISE_KINDS

        if self.noise_kind not in NOISE_KINDS:
            raise InputError(f"unknown --noise-kind {self.noise_kind!r}; known: {', '.join(NOISE_KINDS)}")


def default_epochs(data: str, *, fine_tunes: bool = False) -> int:
    """The epochs a run on source ``data`` trains unless told: the source's own (the demo's 12), else
    ``TrainConfig.epochs``; ``FINETUNE_EPOCHS`` when it fine-tunes a pretrained backbone. An unknown kind
    raises :class:`~csl_core.data.DataError`."""
    return recipe_for(data, fine_tunes=fine_tunes).get("epochs", TrainConfig.epochs)


_NONE = type(None)
_TYPES = {"str": (str,), "int": (int,), "float": (float, int), "bool": (bool,), "int | None": (int, _NONE),
          "float | None": (float, int, _NONE), "bool | None": (bool, _NONE), "str | None": (str, _NONE),
          "list[int] | str | None": (list, str, _NONE)}


def training_set_for(config: TrainConfig, *, progress: bool = False, loaded=None) -> TrainingSet:
    """The training set a run with ``config`` trains on: the same config always gives the same set.

    ``loaded`` is the source as ``csl_core.data.load_source`` returned it, when the caller has read it.
    """
    from .data import build_training_set

    return build_training_set(config.data, subset=config.subset, inject_noise=config.inject_noise,
                              inject_duplicates_pairs=config.inject_duplicates, seed=config.seed,
                              image_size=config.image_size, download=config.download, progress=progress,
                              noise_kind=config.noise_kind, noise_map=config.noise_map, loaded=loaded)
