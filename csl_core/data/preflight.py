"""A cheap look at a data source before a job starts: does it exist, has it the right shape? One check per
source kind, named by its entry in :data:`csl_core.data.SOURCES` (:func:`csl_core.data.check_source` runs it).

Reads folder listings and a CSV header only (no image is decoded), so a form can check a path as it
is typed; the full reader still reports every bad file when training loads the data.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .builtin import DEBIAN_FASHION_MNIST, DEFAULT_CACHE
from .files import IMAGE_EXTENSIONS
from .types import DataError

CSV_PATH_COLUMNS = ("path", "filename", "file", "image")


def check_demo(args: list[str]) -> str:
    return "the built-in digits demo"


def check_fashion_mnist(args: list[str]) -> str:
    return _check_fashion_mnist(args[0] if args else "")


def check_cifar10(args: list[str]) -> str:
    return _check_cifar("cifar10", args[0] if args else "")


def check_cifar100(args: list[str]) -> str:
    return _check_cifar("cifar100", args[0] if args else "")


def check_imagefolder(args: list[str]) -> str:
    if not args or not args[0].strip():
        raise DataError("imagefolder needs a path: enter the folder first")
    return _check_imagefolder(Path(args[0]))


def check_csv(args: list[str]) -> str:
    if not args or not args[0].strip():
        raise DataError("csv needs a path: enter the CSV file first")
    return _check_csv(Path(args[0]), Path(args[1]) if len(args) > 1 and args[1] else None)


def _check_imagefolder(root: Path) -> str:
    if not root.exists():
        raise DataError(f"folder {str(root)!r} does not exist; enter the folder that holds one subfolder per class")
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is a file, not a folder; enter the folder that holds one subfolder "
                        "per class (or pick the CSV source for a label file)")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders found; expected {root}/<class>/<image files>")
    images = 0
    for folder in classes:
        count = sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith("."))
        if count == 0:
            raise DataError(f"{folder}: class folder {folder.name!r} holds no image file "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder")
        images += count
    return f"{images:,} image files in {len(classes)} class folders"


def _check_csv(file: Path, root: Path | None) -> str:
    if not file.exists():
        raise DataError(f"CSV file {str(file)!r} does not exist; enter a file with columns path,label")
    if not file.is_file():
        raise DataError(f"{str(file)!r} is a folder; enter a CSV file with columns path,label "
                        "(or pick the folder source for ROOT/<class>/<image>)")
    if root is not None and not root.is_dir():
        raise DataError(f"image root {str(root)!r} given for {file} does not exist")
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            header = [h.strip().lower() for h in next(csv.reader(f), [])]
            rows = sum(1 for _ in f)
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise DataError(f"{file}: cannot read it as CSV ({e}); save it as UTF-8 text with a path,label header") from e
    if "label" not in header or not any(c in header for c in CSV_PATH_COLUMNS):
        raise DataError(f"{file}, line 1: needs a header with columns 'path' and 'label' "
                        f"(found: {', '.join(header) or 'none'})")
    if rows == 0:
        raise DataError(f"{file}: no rows below the header; add one row per image (path,label)")
    return f"{rows:,} rows in {file.name}"


def _check_fashion_mnist(where: str) -> str:
    folders = [Path(where)] if where else [DEBIAN_FASHION_MNIST, DEFAULT_CACHE / "FashionMNIST" / "raw"]
    for folder in folders:
        if (folder / "train-images-idx3-ubyte.gz").exists() or (folder / "train-images-idx3-ubyte").exists():
            return f"Fashion-MNIST in {folder}"
    raise DataError(f"Fashion-MNIST not found in {where or DEBIAN_FASHION_MNIST}; install it "
                    "(apt-get install dataset-fashion-mnist) or enter the folder holding its four idx files")


def _check_cifar(kind: str, where: str) -> str:
    folder_name = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    base = Path(where) if where else DEFAULT_CACHE
    for folder in (base / folder_name, base):
        if (folder / ("data_batch_1" if kind == "cifar10" else "train")).exists():
            return f"{kind} in {folder}"
    raise DataError(f"{kind} not found under {base} (expected {folder_name}/); enter the folder that holds it, "
                    f"or train with `python -m csl_core train --data {kind} --download` once")
