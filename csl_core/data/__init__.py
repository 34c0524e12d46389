"""Data layer: sources (built-in readers, the user's files), the sample table, noise injection, the torch dataset.

Every source is loaded into an :class:`ImageSource`: decoded uint8 images held in memory at a fixed
size, integer labels, class names and a stable id (a file path for files on disk). A
:class:`TrainingSet` is what a run trains on: a source, optionally subset, with injected noise or
duplicates, and a sample table whose row ``i`` describes training sample ``i``.

Source specs (the ``--data`` option):

- ``demo``: scikit-learn's bundled digits (8x8, 10 classes), 20% held out as a test split.
- ``fashion-mnist[:ROOT]``: the four idx files; Debian's ``dataset-fashion-mnist`` is used when present.
- ``cifar10[:ROOT]`` / ``cifar100[:ROOT]``: the python-pickle batches (``cifar-10-batches-py``).
- ``imagefolder:PATH``: ``PATH/<class>/<image>``.
- ``csv:FILE[:ROOT]``: columns ``path,label``; paths relative to ROOT or to the CSV's folder.
"""
from __future__ import annotations

from .builtin import DEBIAN_FASHION_MNIST, DEFAULT_CACHE, FASHION_CLASSES, load_cifar, load_demo, load_fashion_mnist
from .dataset import IndexedDataset
from .decode import decode_files
from .files import IMAGE_EXTENSIONS, load_csv, load_imagefolder
from .noise import NOISE_KINDS, confusable_map, inject_duplicates, inject_label_noise, pairflip_map, parse_class_map
from .sources import (
    SOURCE_KINDS,
    SOURCES,
    SourceKind,
    build_training_set,
    check_source,
    default_duplicates,
    default_noise,
    load_source,
    parse_spec,
    source_kind,
)
from .types import DataError, ImageSource, TrainingSet

__all__ = ["DEBIAN_FASHION_MNIST", "DEFAULT_CACHE", "FASHION_CLASSES", "IMAGE_EXTENSIONS", "NOISE_KINDS", "SOURCES",
           "SOURCE_KINDS", "DataError", "ImageSource", "IndexedDataset", "SourceKind", "TrainingSet",
           "build_training_set", "check_source", "confusable_map", "decode_files", "default_duplicates",
           "default_noise",
           "inject_duplicates", "inject_label_noise", "load_cifar", "load_csv", "load_demo", "load_fashion_mnist",
           "load_imagefolder", "load_source", "pairflip_map", "parse_class_map", "parse_spec", "source_kind"]
