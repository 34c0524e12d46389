"""The user's own files: an ImageFolder tree or a ``path,label`` CSV, decoded once into memory."""
from __future__ import annotations

import csv
import errno
import os
import re
from pathlib import Path

import numpy as np

from .class_names import class_name, class_names
from .decode import decode_files
from .types import DataError, ImageSource

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_INTEGER = re.compile(r"[+-]?[0-9]+")


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
    source = decode_files(paths, labels, class_names([d.name for d in class_dirs], f"{root}: class folders"),
                          image_size=image_size, progress=progress)
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
    top = os.path.realpath(folder)

    def visit(current: Path) -> None:
        real = os.path.realpath(current)
        if real in seen or (current != folder and (top + os.sep).startswith(real.rstrip(os.sep) + os.sep)):
            # a link back to this folder or one above it (``cat/loop -> ..``) would walk the whole tree again
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
        key = class_name(name, what).strip().casefold()
        if key in folded:
            raise DataError(f"{what}: {folded[key]!r} and {name!r} differ only in case, spacing or Unicode form; "
                            "rename or merge them into one class")
        folded[key] = name


def _check_no_empty_class(source: ImageSource, where: str) -> None:
    counts = np.bincount(source.labels, minlength=len(source.classes))
    empty = [source.classes[c] for c in np.flatnonzero(counts == 0)]
    if empty:  # no run (and no run report) is written: the reasons are said here
        reasons = "; ".join(f"{e['id']}: {e['reason']}" for e in source.skipped[:5])
        more = f" (and {len(source.skipped) - 5} more)" if len(source.skipped) > 5 else ""
        raise DataError(f"{where}: class(es) {', '.join(map(repr, empty))} have no readable image; fix or remove "
                        f"them. {len(source.skipped)} file(s) skipped" + (f": {reasons}{more}" if reasons else ""))


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
    raw = [(line, class_name(t, f"{where}, line {line}")) for line, t in raw]   # NFC, nothing invisible
    classes = sorted({t for _, t in raw})
    _check_distinct_names(classes, f"{where}: labels")
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, [lookup[t] for _, t in raw]


def _is_integer(text: str) -> bool:
    return _INTEGER.fullmatch(text) is not None
