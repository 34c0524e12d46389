"""A run's settings, free of torch so that a UI can build them without loading it."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .data import TrainingSet

SCHEDULES = ("onecycle", "step", "constant")
NOISE_KINDS = ("symmetric", "pairflip", "confusable")  # where injected label noise sends a flipped label


# What a run trains with unless told otherwise, per kind of source. The user's own files get the recipe
# that measured best on real label noise (CIFAR-10N, docs/bench/cifar10n.md); the built-in sources keep
# the settings their published figures were measured with.
RECIPES: dict[str, dict] = {
    "demo": {"epochs": 12},
    "files": {"model": "airbench", "epochs": 20, "batch_size": 256, "lr": 0.2},
}
FILE_SOURCES = ("csv", "imagefolder")


def recipe_for(data: str) -> dict:
    """The settings a run on ``data`` (a ``--data`` spec) gets unless told otherwise: see :data:`RECIPES`."""
    kind = data.split(":", 1)[0].strip().lower()
    return dict(RECIPES["files" if kind in FILE_SOURCES else kind] if kind in (*FILE_SOURCES, *RECIPES) else {})


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

    @classmethod
    def for_source(cls, data: str, **given) -> TrainConfig:
        """The config of a run on ``data``: the source's recipe (:func:`recipe_for`), then every
        setting in ``given`` that is not ``None``."""
        return cls(data=data, **{**recipe_for(data), **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.inject_noise is not None and not 0 <= self.inject_noise < 1:
            raise ValueError(f"--inject-noise must be a fraction in [0, 1), got {self.inject_noise}")
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"unknown --noise-kind {self.noise_kind!r}; known: {', '.join(NOISE_KINDS)}")



def training_set_for(config: TrainConfig, *, progress: bool = False, loaded=None) -> TrainingSet:
    """The training set a run with ``config`` trains on: the same config always gives the same set.

    ``loaded`` is the source as ``csl_core.data.load_source`` returned it, when the caller has read it.
    """
    from .data import build_training_set

    return build_training_set(config.data, subset=config.subset, inject_noise=config.inject_noise,
                              inject_duplicates_pairs=config.inject_duplicates, seed=config.seed,
                              image_size=config.image_size, download=config.download, progress=progress,
                              noise_kind=config.noise_kind, noise_map=config.noise_map, loaded=loaded)
