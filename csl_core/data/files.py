"""The user's own files: an ImageFolder tree or a ``path,label`` CSV, decoded once into memory."""
from __future__ import annotations

import csv
import errno
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..progress import progress_bar
from .types import DataError, ImageSource

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_INTEGER = re.compile(r"[+-]?[0-9]+")


#: Per image: at most this many pixels (a 64-megapixel photo is fine; a 13000 x 13000 PNG is not) and
#: this many bytes on disk. Across the decoding threads: at most DECODE_BUDGET_PIXELS pixels at once.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 256 * 1024 * 1024
DECODE_BUDGET_PIXELS = 128_000_000


_ORIENTATION = 0x0112  # the EXIF tag


class TooLargeError(ValueError):
    """An image over the per-image decode limits."""


class PixelBudget:
    """Pixels being decoded at once, across threads: ``take(n)`` waits until ``n`` more fit under the
    budget (an image as large as the whole budget waits until it decodes alone)."""

    def __init__(self, pixels: int):
        self.pixels = int(pixels)
        self._used = 0
        self._cond = threading.Condition()

    @contextmanager
    def take(self, n: int):
        n = min(int(n), self.pixels)
        with self._cond:
            self._cond.wait_for(lambda: self._used + n <= self.pixels)
            self._used += n
        try:
            yield
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()


def _decode(path: str, size: int, mode: str, budget: PixelBudget | None = None) -> np.ndarray:
    """Decode, turn upright (EXIF orientation), convert to ``mode`` and resize to ``size`` x ``size``.

    Raises on corrupt files, and :class:`TooLargeError` (before decoding) on files over
    :data:`MAX_IMAGE_BYTES` or images over :data:`MAX_IMAGE_PIXELS`; ``budget`` bounds the pixels
    decoded at once across threads."""
    file_size = os.path.getsize(path)
    if file_size > MAX_IMAGE_BYTES:
        raise TooLargeError(f"file of {file_size / 2**20:.0f} MiB is over the {MAX_IMAGE_BYTES // 2**20} MiB "
                            "limit per image")
    with Image.open(path) as img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise TooLargeError(f"{width} x {height} pixels is over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel "
                                "limit per image; downscale it first")
        with budget.take(width * height) if budget is not None else nullcontext():
            if img.format == "JPEG" and min(width, height) > 4 * size:
                img.draft(img.mode, (2 * size, 2 * size))  # decode a JPEG at reduced size: less memory
            img.load()
            if img.getexif().get(_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)  # as a viewer shows it (phones store photos sideways)
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
    shows them); floats in [0, 1] by 1, whole-numbered floats in [0, 255] (8-bit data stored as
    float) as they are, and any other float range (HDR, negative values, physical units) stretched
    from its own minimum and maximum rather than clipped. NaN becomes 0.

    Converted a band of rows at a time, so that a large image costs its own pixels and a few MB more,
    not several float copies of itself."""
    raw = np.asarray(img)
    height = raw.shape[0] if raw.ndim else 0
    band = max(1, (1 << 21) // max(1, raw.shape[1] if raw.ndim > 1 else 1))
    offset, scale = 0.0, 1.0
    if img.mode.startswith("I;16") or (img.mode == "I" and raw.size and raw.max() > 255):
        scale = 1 / 257.0  # 65535 -> 255; a 16-bit PNG may open as "I"
    elif img.mode == "F" and raw.size:
        low, high, whole = np.inf, -np.inf, True
        for start in range(0, height, band):
            chunk = raw[start:start + band]
            finite = chunk[np.isfinite(chunk)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
                whole = whole and bool(np.all(finite == np.round(finite)))
        if not np.isfinite(low):
            low = high = 0.0
        if low >= 0 and high <= 1.0:
            scale = 255.0
        elif not (low >= 0 and high <= 255 and whole):  # HDR, negative or arbitrary-unit floats
            offset, scale = low, 255.0 / max(high - low, 1e-12)
    out = np.empty(raw.shape, np.uint8)
    for start in range(0, height, band):
        chunk = raw[start:start + band].astype(np.float32)
        if offset:
            chunk -= np.float32(offset)
        if scale != 1.0:
            chunk *= np.float32(scale)
        np.nan_to_num(chunk, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(chunk, 0, 255, out=chunk)
        out[start:start + band] = np.rint(chunk, out=chunk)
    return Image.fromarray(out, "L")


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

    budget = PixelBudget(DECODE_BUDGET_PIXELS)

    def work(path: str):
        try:
            return _decode(path, image_size, mode, budget), None
        except TooLargeError as e:
            return None, f"too large to decode ({e})"
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
    """``root/<class>/<image>``; classes sorted by name, as torchvision's ImageFolder does.

    Every file under the root is either used or listed in the run report with the reason: hidden
    files and folders, non-images, dangling links, symbolic-link loops, and one file reached twice
    (through a linked folder) under two classes. Links that lead outside the root are followed and
    noted in the report."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"ImageFolder root {root!r} does not exist or is not a folder; "
                        "expected ROOT/<class>/<image files>")
    real_root = base.resolve()
    entries = sorted(base.iterdir())
    class_dirs = [d for d in entries if d.is_dir() and not d.name.startswith(".")]
    if not class_dirs:
        raise DataError(f"{root}: no class folders found; expected ROOT/<class>/<image files>")
    _check_distinct_names([d.name for d in class_dirs], f"{root}: class folders")
    # Every file is either used or listed in the run report, so nothing is dropped unseen.
    skipped = [{"id": str(p), "reason": "not inside a class folder"}
               for p in entries if p.is_file() and not p.name.startswith(".")]
    skipped += [{"id": str(p), "reason": "dangling symbolic link (its target does not exist)"}
                for p in entries if p.is_symlink() and not p.exists()]
    for hidden in sorted(d for d in entries if d.is_dir() and d.name.startswith(".")):
        # .ipynb_checkpoints, .git, ...: not a class; said once per folder, with what it holds
        files = [p for p in hidden.rglob("*") if p.is_file()]
        images = sum(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)
        if files:
            skipped.append({"id": str(hidden), "reason": f"hidden folder, not a class: {images} image(s) and "
                                                        f"{len(files) - images} other file(s) not used"})
    notes: list[dict] = []
    paths, labels = [], []
    first_seen: dict[str, tuple[int, str]] = {}   # real file -> (class, path) of its first listing
    conflicting: set[str] = set()
    for c, d in enumerate(class_dirs):
        files, problems = _walk_class_folder(d)
        skipped += problems
        if not any(not p.name.startswith(".") for p in files):
            raise DataError(f"{d}: class folder {d.name!r} is empty; add images or remove the folder")
        for p in files:
            if p.name.startswith("."):
                skipped.append({"id": str(p), "reason": "hidden file"})
                continue
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append({"id": str(p), "reason": f"not an image file (extension {p.suffix or 'none'})"})
                continue
            real = os.path.realpath(p)
            if real in first_seen:
                other_class, other = first_seen[real]
                if other_class != c:
                    conflicting.add(real)
                    skipped.append({"id": str(p), "reason": f"the same file as {other} but under another class "
                                                           f"({class_dirs[other_class].name!r}); neither is used"})
                else:
                    skipped.append({"id": str(p), "reason": f"the same file as {other} (listed twice)"})
                continue
            first_seen[real] = (c, str(p))
            if not _inside(Path(real), real_root):
                notes.append({"id": str(p), "note": f"leads outside the ImageFolder root, to {real}"})
            paths.append(str(p))
            labels.append(c)
    if conflicting:
        keep = [i for i, p in enumerate(paths) if os.path.realpath(p) not in conflicting]
        skipped += [{"id": paths[i], "reason": "also listed under another class (see below); not used"}
                    for i in range(len(paths)) if os.path.realpath(paths[i]) in conflicting]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    source = decode_files(paths, labels, [d.name for d in class_dirs], image_size=image_size, progress=progress)
    source.skipped = skipped + source.skipped
    source.notes = notes + source.notes
    _check_no_empty_class(source, root)
    return source


def _walk_class_folder(folder: Path) -> tuple[list[Path], list[dict]]:
    """Every file below ``folder`` (following links to folders, each real folder once), sorted, and the
    entries that cannot be used: dangling links and link loops."""
    files: list[Path] = []
    problems: list[dict] = []
    seen: set[str] = set()

    def visit(current: Path) -> None:
        real = os.path.realpath(current)
        if real in seen:
            problems.append({"id": str(current), "reason": f"symbolic-link loop (leads back to {real}); not "
                                                           "followed"})
            return
        seen.add(real)
        try:
            children = sorted(current.iterdir())
        except OSError as e:
            problems.append({"id": str(current), "reason": f"folder cannot be read ({e})"})
            return
        for child in children:
            try:
                if child.is_dir():
                    visit(child)
                elif child.is_file():
                    files.append(child)
                elif child.is_symlink() and not child.exists():
                    problems.append({"id": str(child), "reason": _broken_link_reason(child)})
                else:
                    problems.append({"id": str(child), "reason": "not a regular file (a pipe, socket or device)"})
            except OSError as e:  # ELOOP: a link that points at itself
                problems.append({"id": str(child), "reason": f"cannot be followed ({e.strerror or e})"})

    visit(folder)
    return sorted(files), problems


def _broken_link_reason(link: Path) -> str:
    try:
        os.stat(link)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic-link loop (the link leads back to itself); not followed"
    return "dangling symbolic link (its target does not exist)"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _check_distinct_names(names: list[str], what: str) -> None:
    """Refuse class names that differ only in case or surrounding space (``Bag`` and ``bag``): they are
    almost always one class, and would merge into one folder on macOS or Windows."""
    folded: dict[str, str] = {}
    for name in names:
        key = name.strip().casefold()
        if key in folded:
            raise DataError(f"{what}: {folded[key]!r} and {name!r} differ only in case or spacing; rename or "
                            "merge them into one class")
        folded[key] = name


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
        key = os.path.normcase(os.path.realpath(full))  # a file reached through a linked folder is one file
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
    paths, labels, ids, skipped, notes = [], [], [], [], []
    real_base = base.resolve()
    for (line, rel, full), label in zip(rows_kept, all_labels):
        if full.is_file():
            paths.append(str(full))
            labels.append(label)
            ids.append(rel)
            if not _inside(full.resolve(), real_base):
                notes.append({"id": rel, "note": f"CSV line {line}: leads outside the image root {base}, to "
                                                 f"{full.resolve()}"})
        elif full.is_symlink() and not full.exists():
            skipped.append({"id": rel, "reason": f"dangling symbolic link: {full} (CSV line {line})"})
        elif full.exists():
            skipped.append({"id": rel, "reason": f"not a regular file: {full} (CSV line {line})"})
        else:
            skipped.append({"id": rel, "reason": f"file not found: {full} (CSV line {line})"})
    source = decode_files(paths, labels, classes, image_size=image_size, ids=ids, progress=progress)
    source.skipped = skipped + source.skipped
    source.notes = notes + source.notes
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
    _check_distinct_names(classes, f"{where}: labels")
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, [lookup[t] for _, t in raw]


def _is_integer(text: str) -> bool:
    return _INTEGER.fullmatch(text) is not None
