"""Built-in sources: the demo (scikit-learn digits), Fashion-MNIST idx files, CIFAR batches."""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import CSLError
from .types import DataError, ImageSource

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_CACHE = Path(os.environ.get("CSL_DATA_CACHE", Path.home() / ".cache" / "csl"))
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


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
                entry = CifarUnpickler(f, encoding="latin1").load()
        except UnsafePickleError as e:
            raise DataError(f"{folder / name}: {e}; this is not a CIFAR batch as published, so it is not "
                            "read (a pickle can run code); re-download the dataset from its source") from e
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


class UnsafePickleError(CSLError, pickle.UnpicklingError):
    """A pickle that names something a CIFAR batch never holds."""


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as found
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as found
    return found


# What the published CIFAR batches (and the same data pickled again by numpy 1 or 2) consist of:
# dicts, lists, strings and bytes, plus numpy arrays of plain dtypes. Nothing else is ever looked up.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, for text codecs only."""
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591", "utf8", "ascii"):
        raise UnsafePickleError(f"the pickle asks for codec {encoding!r}")
    return text.encode(encoding)


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what CIFAR batches hold (dicts, lists, text, numpy arrays of plain
    numbers). Anything else a pickle names (``os.system``, ``builtins.eval``, any class) is refused
    with :class:`UnsafePickleError` before it is looked up, so reading a batch can never run code."""

    def find_class(self, module: str, name: str):
        factory = _CIFAR_GLOBALS.get((module, name))
        if factory is None:
            raise UnsafePickleError(f"the pickle refers to {module}.{name}")
        return factory()

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle holds a persistent reference")


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)
