"""Data sources, the sample table and label-noise / duplicate injection.

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

import csv
import gzip
import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .progress import progress_bar

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_CACHE = Path(os.environ.get("CSL_DATA_CACHE", Path.home() / ".cache" / "csl"))
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_INTEGER = re.compile(r"[+-]?[0-9]+")
SOURCE_KINDS = ("demo", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "csv")


class DataError(ValueError):
    """Input data a person must fix: the message says what is wrong, where, and what to do."""


@dataclass
class ImageSource:
    """Decoded images in memory.

    ``images`` is uint8 ``(N, H, W, C)``; ``ids`` are stable ids (file paths for sources on disk);
    ``skipped`` lists the files that could not be used, each ``{"id", "reason"}``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    ids: list[str]
    paths: list[str] | None = None
    skipped: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.dtype.kind == "f" and labels.size and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0]
            raise DataError(f"labels must be integers or class names; got {bad!r}")
        if labels.dtype.kind not in "iuf" and labels.size:
            raise DataError(f"labels must be integer class indices, got {labels.dtype} values")
        self.labels = labels.astype(np.int64)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes; "
                            f"found {self.labels.min()}..{self.labels.max()}")
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if len(self.images) != len(self.labels) or len(self.ids) != len(self.labels):
            raise ValueError("images, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


@dataclass
class TrainingSet:
    """What a run trains on. ``samples`` has one row per training sample, in training-index order."""

    spec: str
    source: ImageSource
    samples: pd.DataFrame
    test: ImageSource | None = None

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    @property
    def labels(self) -> np.ndarray:
        return self.samples["label"].to_numpy(np.int64)

    @property
    def image_index(self) -> np.ndarray:
        return self.samples["image_index"].to_numpy(np.int64)

    @property
    def has_ground_truth(self) -> bool:
        return "is_mislabeled" in self.samples.columns

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        """The uint8 ``(H, W, C)`` image that training sample ``index`` shows."""
        return self.source.images[self.image_index[index]]

    def dataset(self) -> IndexedDataset:
        return IndexedDataset(self.source.images, self.image_index, self.labels)

    def test_dataset(self) -> IndexedDataset | None:
        if self.test is None:
            return None
        return IndexedDataset(self.test.images, np.arange(len(self.test)), self.test.labels)


class IndexedDataset:
    """A map-style dataset (any ``DataLoader`` takes it) that yields ``(x, y, index)``, with ``x`` a
    uint8 ``(C, H, W)`` tensor.

    Indexing with a list of indices returns a whole batch at once, so a ``DataLoader`` built with
    ``batch_size=None`` over a ``BatchSampler`` does no per-sample Python work. torch is imported
    here rather than with the module, so that reading sources and run folders does not load it.
    """

    def __init__(self, images: np.ndarray, image_index: np.ndarray, labels: np.ndarray):
        import torch

        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, C, H, W)
        # Copies: pandas hands out read-only arrays, which torch cannot wrap without a warning.
        self.image_index = torch.tensor(np.asarray(image_index), dtype=torch.long)
        self.labels = torch.tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        import torch

        index = torch.as_tensor(index, dtype=torch.long)
        return self.images[self.image_index[index]], self.labels[index], index


# ---------------------------------------------------------------- noise and duplicate injection (pure)

def inject_label_noise(labels: np.ndarray, fraction: float, num_classes: int, *,
                       seed: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric label noise: ``floor(fraction * N)`` samples get a class other than their own.

    Returns ``(noisy_labels, flipped_indices)``; indices in ``exclude`` are never chosen.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"noise fraction must be in [0, 1), got {fraction}")
    if num_classes < 2:
        raise ValueError("label noise needs at least two classes")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude):
        candidates = np.setdiff1d(candidates, exclude)
    count = int(np.floor(fraction * len(labels)))
    if count > len(candidates):
        raise ValueError(f"cannot flip {count} labels: only {len(candidates)} samples are eligible")
    flipped = np.sort(rng.choice(candidates, size=count, replace=False))
    noisy = labels.copy()
    # An offset in 1..C-1 gives each other class the same chance and never the sample's own.
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=count)) % num_classes
    return noisy, flipped


def inject_duplicates(image_index: np.ndarray, labels: np.ndarray, num_pairs: int, num_classes: int, *,
                      seed: int, exclude: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duplicates with conflicting labels: in each pair ``(a, b)``, ``a`` shows ``b``'s image and gets
    a label other than ``b``'s.

    Returns ``(image_index, labels, pairs)`` with ``pairs`` an ``(num_pairs, 2)`` array of disjoint pairs.
    """
    if num_classes < 2:
        raise ValueError("conflicting duplicates need at least two classes")
    image_index = np.asarray(image_index, dtype=np.int64).copy()
    labels = np.asarray(labels, dtype=np.int64).copy()
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude):
        candidates = np.setdiff1d(candidates, exclude)
    if 2 * num_pairs > len(candidates):
        raise ValueError(f"cannot make {num_pairs} disjoint pairs from {len(candidates)} eligible samples")
    chosen = rng.choice(candidates, size=2 * num_pairs, replace=False)
    pairs = chosen.reshape(num_pairs, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    image_index[a] = image_index[b]
    labels[a] = (labels[b] + rng.integers(1, num_classes, size=num_pairs)) % num_classes
    return image_index, labels, pairs


# ---------------------------------------------------------------- building a training set

def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``kind:arg1:arg2`` into its kind and arguments; Windows drive letters stay whole."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in SOURCE_KINDS:
        raise DataError(f"unknown data source {spec!r}: use one of {', '.join(SOURCE_KINDS)} "
                        "(e.g. demo, fashion-mnist, imagefolder:PATH, csv:FILE[:ROOT])")
    args: list[str] = []
    for part in rest.split(":") if rest else []:
        if args and len(args[-1]) == 1 and args[-1].isalpha() and part.startswith(("\\", "/")):
            args[-1] += ":" + part
        else:
            args.append(part)
    return kind, args


def default_noise(spec: str) -> float:
    """The demo ships with 5% injected noise; every other source trains on its labels as they are."""
    return 0.05 if parse_spec(spec)[0] == "demo" else 0.0


def default_duplicates(spec: str, num_samples: int) -> int:
    return max(1, int(round(0.005 * num_samples))) if parse_spec(spec)[0] == "demo" else 0


def load_source(spec: str, *, image_size: int | None = None, download: bool = False,
                progress: bool = False) -> tuple[ImageSource, ImageSource | None]:
    """Load the train split (and test split, where the source has one) named by ``spec``."""
    kind, args = parse_spec(spec)
    if kind == "demo":
        return load_demo()
    if kind == "fashion-mnist":
        return load_fashion_mnist(args[0] if args else None, download=download)
    if kind in ("cifar10", "cifar100"):
        return load_cifar(kind, args[0] if args else None, download=download)
    if not args or not args[0]:
        raise DataError(f"{kind} needs a path: --data {kind}:PATH")
    size = image_size or 32
    if kind == "imagefolder":
        return load_imagefolder(args[0], image_size=size, progress=progress), None
    return load_csv(args[0], args[1] if len(args) > 1 else None, image_size=size, progress=progress), None


def build_training_set(spec: str, *, subset: int | None = None, inject_noise: float | None = None,
                       inject_duplicates_pairs: int | None = None, seed: int = 0,
                       image_size: int | None = None, download: bool = False,
                       progress: bool = False) -> TrainingSet:
    """Load ``spec`` and apply the seeded subset and injections; the same arguments give the same set.

    ``inject_noise`` / ``inject_duplicates_pairs`` of ``None`` take the source's default (the demo
    injects 5% noise and about 0.5% of N duplicate pairs; other sources none).
    """
    source, test = load_source(spec, image_size=image_size, download=download, progress=progress)
    if len(source) == 0:
        raise DataError(f"{spec}: no usable images were found")
    num_classes = len(source.classes)
    rng = np.random.default_rng(seed)
    image_index = np.arange(len(source))
    if subset is not None and subset < len(source):
        if subset <= 0:
            raise DataError(f"--subset must be positive, got {subset}")
        image_index = np.sort(rng.choice(len(source), size=subset, replace=False))
    original = source.labels[image_index]
    noise = default_noise(spec) if inject_noise is None else inject_noise
    pairs_wanted = (default_duplicates(spec, len(image_index)) if inject_duplicates_pairs is None
                    else inject_duplicates_pairs)
    labels, flipped = inject_label_noise(original, noise, num_classes, seed=seed + 1)
    pairs = np.empty((0, 2), dtype=np.int64)
    if pairs_wanted:
        image_index, labels, pairs = inject_duplicates(image_index, labels, pairs_wanted, num_classes,
                                                       seed=seed + 2, exclude=flipped)
    n = len(image_index)
    samples = pd.DataFrame({
        "index": np.arange(n),
        "sample_id": [source.ids[i] for i in image_index],
        "label": labels,
        "class_name": [source.classes[c] for c in labels],
        "image_index": image_index,
    })
    if source.paths is not None:
        samples["path"] = [source.paths[i] for i in image_index]
    if pairs_wanted:
        # A duplicate keeps its own id so that the two members stay distinguishable in every table.
        samples.loc[pairs[:, 0], "sample_id"] = [f"{source.ids[j]}#duplicate-of-{b}"
                                                 for j, b in zip(image_index[pairs[:, 1]], pairs[:, 1])]
    if noise or pairs_wanted:
        true_label = source.labels[image_index]
        duplicate_of = np.full(n, -1)
        duplicate_of[pairs[:, 0]] = pairs[:, 1]
        duplicate_of[pairs[:, 1]] = pairs[:, 0]
        samples["true_label"] = true_label
        samples["is_mislabeled"] = labels != true_label
        samples["is_duplicate"] = duplicate_of >= 0
        samples["duplicate_of"] = duplicate_of
    return TrainingSet(spec=spec, source=source, samples=samples, test=test)


# ---------------------------------------------------------------- built-in sources

def load_demo() -> tuple[ImageSource, ImageSource]:
    """scikit-learn's digits; a fixed stratified 20% is the test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    ids = [f"digits-{i:04d}" for i in range(len(images))]
    train_idx, test_idx = train_test_split(np.arange(len(images)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    train_idx.sort()
    test_idx.sort()
    classes = [str(c) for c in digits.target_names]

    def part(idx):
        return ImageSource(images[idx], digits.target[idx], classes, [ids[i] for i in idx])

    return part(train_idx), part(test_idx)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read idx file ({e}); re-download or reinstall it") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes; re-download or reinstall it")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated idx header; re-download or reinstall it")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(bytearray(data), dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated idx file (expected {int(np.prod(shape))} bytes of data, "
                        f"found {body.size}); re-download or reinstall it")
    return body.reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).exists():
            return root / name
    return None


def load_fashion_mnist(root: str | None = None, *, download: bool = False
                       ) -> tuple[ImageSource, ImageSource]:
    """Fashion-MNIST from ``root``, else Debian's package, else torchvision's download (``download=True``)."""
    candidates = [Path(root)] if root else [DEBIAN_FASHION_MNIST, DEFAULT_CACHE / "FashionMNIST" / "raw"]
    for folder in candidates:
        files = [_find(folder, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
        if all(files):
            break
    else:
        if root or not download:
            where = root or f"{DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
            raise DataError(f"Fashion-MNIST not found in {where}; install it, pass fashion-mnist:DIR "
                            "holding the four idx files, or allow downloading (--download)")
        from torchvision.datasets import FashionMNIST
        FashionMNIST(str(DEFAULT_CACHE), train=True, download=True)
        return load_fashion_mnist(str(DEFAULT_CACHE / "FashionMNIST" / "raw"))
    train_x, train_y, test_x, test_y = (_read_idx(f) for f in files)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise DataError(f"{folder}: image and label files disagree in length")
    return (ImageSource(train_x, train_y, FASHION_CLASSES, [f"train-{i:05d}" for i in range(len(train_y))]),
            ImageSource(test_x, test_y, FASHION_CLASSES, [f"test-{i:05d}" for i in range(len(test_y))]))


def load_cifar(kind: str, root: str | None = None, *, download: bool = False
               ) -> tuple[ImageSource, ImageSource]:
    """CIFAR-10/100 from the python-pickle batches under ``root`` (``cifar-10-batches-py`` etc.)."""
    folder_name = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    base = Path(root) if root else DEFAULT_CACHE
    folder = base / folder_name if (base / folder_name).exists() else base
    train_files = ([f"data_batch_{i}" for i in range(1, 6)] if kind == "cifar10" else ["train"])
    test_file, meta_file = ("test_batch", "batches.meta") if kind == "cifar10" else ("test", "meta")
    if not all((folder / f).exists() for f in [*train_files, test_file, meta_file]):
        if not download:
            raise DataError(f"{kind} not found under {base} (expected {folder_name}/ with "
                            f"{', '.join([*train_files, test_file, meta_file])}); pass {kind}:DIR or "
                            "allow downloading (--download)")
        from torchvision import datasets
        (datasets.CIFAR10 if kind == "cifar10" else datasets.CIFAR100)(str(base), download=True)
        return load_cifar(kind, str(base))
    label_key = "labels" if kind == "cifar10" else "fine_labels"

    def unpickle(name: str) -> dict:
        try:
            with open(folder / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except Exception as e:  # a truncated pickle raises many different types
            raise DataError(f"{folder / name}: cannot read CIFAR batch ({e}); re-download it") from e
        if not isinstance(entry, dict):
            raise DataError(f"{folder / name}: not a CIFAR batch (a pickled dict); re-download it")
        return {_text(k): v for k, v in entry.items()}

    def batches(names: list[str], prefix: str) -> ImageSource:
        xs, ys = [], []
        for name in names:
            entry = unpickle(name)
            if "data" not in entry or label_key not in entry:
                raise DataError(f"{folder / name}: missing 'data' or '{label_key}'; re-download it")
            data = np.asarray(entry["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(entry[label_key]):
                raise DataError(f"{folder / name}: expected {len(entry[label_key])} rows of 3072 bytes, "
                                f"found shape {data.shape}; re-download it")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        return ImageSource(x, y, classes, [f"{prefix}-{i:05d}" for i in range(len(y))])

    meta = unpickle(meta_file)
    names_key = "label_names" if kind == "cifar10" else "fine_label_names"
    if names_key not in meta:
        raise DataError(f"{folder / meta_file}: missing '{names_key}'; re-download it")
    classes = [_text(c) for c in meta[names_key]]
    return batches(train_files, "train"), batches([test_file], "test")


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- the user's own files

def _decode(path: str, size: int, mode: str) -> np.ndarray:
    """Decode, convert to ``mode`` and resize to ``size`` x ``size``; raises on corrupt files."""
    with Image.open(path) as img:
        img.load()
        if img.mode in WIDE_GREY_MODES:
            img = _to_8_bit(img)
        if img.mode != mode:
            img = img.convert(mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]


# Greyscale wider than 8 bit (16-bit PNG and TIFF, 32-bit int, float): PIL's convert("L") clips it at 255.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_8_bit(img: Image.Image) -> Image.Image:
    """Rescale wide greyscale to 0-255 by its type's range: 16-bit integers by 65535 (as any viewer
    shows them), floats in [0, 1] by 1; other floats and 32-bit integers are already 0-255 or clip."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0  # 65535 -> 255; a 16-bit PNG may open as "I"
    elif img.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8), "L")


def _pick_mode(paths: list[str]) -> str:
    """Grayscale only when every readable file is; anything in colour makes the whole set RGB."""
    for path in paths:
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "1", "I;16", "I", "F"):
                    return "RGB"
        except Exception:
            continue
    return "L"


def decode_files(paths: list[str], labels: list[int], classes: list[str], *, image_size: int,
                 ids: list[str] | None = None, progress: bool = False) -> ImageSource:
    """Decode every file once; unreadable ones are skipped and listed with the reason."""
    mode = _pick_mode(paths)
    channels = 3 if mode == "RGB" else 1

    def work(path: str):
        try:
            return _decode(path, image_size, mode), None
        except UnidentifiedImageError:
            return None, "not an image (PIL cannot identify the file)"
        except Exception as e:  # PIL raises many types for damaged files; each one only skips that file
            return None, f"corrupt or truncated image ({type(e).__name__}: {e})"

    results = []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        iterator = pool.map(work, paths, chunksize=64)
        if progress:
            iterator = progress_bar(iterator, total=len(paths), desc="decoding images")
        results = list(iterator)
    keep = [i for i, (arr, _) in enumerate(results) if arr is not None]
    ids = ids or paths
    skipped = [{"id": ids[i], "reason": err} for i, (_, err) in enumerate(results) if err is not None]
    images = (np.stack([results[i][0] for i in keep]) if keep
              else np.zeros((0, image_size, image_size, channels), np.uint8))
    return ImageSource(images, np.asarray([labels[i] for i in keep], dtype=np.int64), classes,
                       [ids[i] for i in keep], paths=[paths[i] for i in keep], skipped=skipped)


def load_imagefolder(root: str, *, image_size: int = 32, progress: bool = False) -> ImageSource:
    """``root/<class>/<image>``; classes sorted by name, as torchvision's ImageFolder does."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"ImageFolder root {root!r} does not exist or is not a folder; "
                        "expected ROOT/<class>/<image files>")
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders found; expected ROOT/<class>/<image files>")
    # Every file is either used or listed in the run report, so nothing is dropped unseen.
    skipped = [{"id": str(p), "reason": "not inside a class folder"}
               for p in sorted(base.iterdir()) if p.is_file() and not p.name.startswith(".")]
    for hidden in sorted(d for d in base.iterdir() if d.is_dir() and d.name.startswith(".")):
        # .ipynb_checkpoints, .git, ...: not a class; said once per folder, with what it holds
        files = [p for p in hidden.rglob("*") if p.is_file()]
        images = sum(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)
        if files:
            skipped.append({"id": str(hidden), "reason": f"hidden folder, not a class: {images} image(s) and "
                                                        f"{len(files) - images} other file(s) not used"})
    paths, labels = [], []
    for c, d in enumerate(class_dirs):
        files = sorted(p for p in d.rglob("*") if p.is_file())
        if not any(not p.name.startswith(".") for p in files):
            raise DataError(f"{d}: class folder {d.name!r} is empty; add images or remove the folder")
        for p in files:
            if p.name.startswith("."):
                skipped.append({"id": str(p), "reason": "hidden file"})
            elif p.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(p))
                labels.append(c)
            else:
                skipped.append({"id": str(p), "reason": f"not an image file (extension {p.suffix or 'none'})"})
    source = decode_files(paths, labels, [d.name for d in class_dirs], image_size=image_size, progress=progress)
    source.skipped = skipped + source.skipped
    _check_no_empty_class(source, root)
    return source


def _check_no_empty_class(source: ImageSource, where: str) -> None:
    counts = np.bincount(source.labels, minlength=len(source.classes))
    empty = [source.classes[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"{where}: class(es) {', '.join(map(repr, empty))} have no readable image "
                        f"({len(source.skipped)} file(s) skipped, see the run report); fix or remove them")


def load_csv(csv_file: str, root: str | None = None, *, image_size: int = 32,
             progress: bool = False) -> ImageSource:
    """A label file with columns ``path,label`` (``filename`` / ``id`` columns are accepted too).

    Labels may be class names or integers. Paths are relative to ``root`` or the CSV's folder.
    """
    path = Path(csv_file)
    if not path.is_file():
        raise DataError(f"CSV label file {csv_file!r} does not exist or is not a file; "
                        "pass csv:FILE[:ROOT] with a file holding columns path,label")
    base = Path(root) if root else path.parent
    if root and not base.is_dir():
        raise DataError(f"image root {root!r} given for {csv_file} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_file}: cannot parse as CSV ({e}); save it as UTF-8 text with a path,label "
                        "header") from e
    path_col = next((c for c in ("path", "filename", "file", "image") if c in header), None)
    if path_col is None or "label" not in header:
        raise DataError(f"{csv_file}: needs a header row with columns 'path' and 'label' "
                        f"(found: {', '.join(header) or 'none'})")
    original = {h.strip().lower(): h for h in reader.fieldnames}
    seen: dict[str, tuple[int, str]] = {}
    rows_kept: list[tuple[int, str, Path]] = []
    raw_labels: list[tuple[int, str]] = []
    for line, row in rows:
        rel = (row.get(original[path_col]) or "").strip()
        label = (row.get(original["label"]) or "").strip()
        if not rel:
            raise DataError(f"{csv_file}, line {line}: empty path")
        if not label:
            raise DataError(f"{csv_file}, line {line}: empty label for {rel!r}")
        full = Path(rel) if Path(rel).is_absolute() else base / rel
        key = os.path.normcase(os.path.abspath(full))
        if key in seen:
            first_line, first_rel = seen[key]
            raise DataError(f"{csv_file}, line {line}: path {rel!r} is the same file as {first_rel!r} on line "
                            f"{first_line}; each image may appear once, so remove one of the rows")
        seen[key] = (line, rel)
        rows_kept.append((line, rel, full))
        raw_labels.append((line, label))
    if not rows_kept:
        raise DataError(f"{csv_file}: no rows below the header; add one row per image (path,label)")
    # Classes come from every row, found or not: a class whose files are all missing is reported as empty.
    classes, all_labels = _encode_labels(raw_labels, csv_file)
    paths, labels, ids, skipped = [], [], [], []
    for (line, rel, full), label in zip(rows_kept, all_labels):
        if full.is_file():
            paths.append(str(full))
            labels.append(label)
            ids.append(rel)
        else:
            skipped.append({"id": rel, "reason": f"file not found: {full} (CSV line {line})"})
    source = decode_files(paths, labels, classes, image_size=image_size, ids=ids, progress=progress)
    source.skipped = skipped + source.skipped
    _check_no_empty_class(source, csv_file)
    return source


def _encode_labels(raw: list[tuple[int, str]], where: str) -> tuple[list[str], list[int]]:
    """Integer labels keep their numeric order; class names are sorted. ``raw`` is ``(line, label)``.

    A label that is a number but not an integer (``2.5``, ``1e3``, ``nan``) is refused: it is almost
    always a column of scores or a broken export, not a class.
    """
    integers: list[tuple[int, str]] = []
    names: list[tuple[int, str]] = []
    for line, text in raw:
        if _is_integer(text):
            integers.append((line, text))
            continue
        try:
            float(text)
        except ValueError:
            names.append((line, text))
            continue
        raise DataError(f"{where}, line {line}: label {text!r} is a number but not an integer; labels must "
                        "be integer class indices or class names")
    if integers and names:
        raise DataError(f"{where}: labels mix integers (line {integers[0][0]}: {integers[0][1]!r}) and class "
                        f"names (line {names[0][0]}: {names[0][1]!r}); use one kind throughout")
    if integers:
        classes = [str(v) for v in sorted({int(t) for _, t in integers})]
        lookup = {c: i for i, c in enumerate(classes)}
        return classes, [lookup[str(int(t))] for _, t in raw]
    classes = sorted({t for _, t in names})
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, [lookup[t] for _, t in raw]


def _is_integer(text: str) -> bool:
    return _INTEGER.fullmatch(text) is not None
