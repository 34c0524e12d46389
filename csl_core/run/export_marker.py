"""The mark of a tree an export wrote: :data:`MARK`, a manifest of every entry the export made there (its
relative path, kind and inode). Only a tree holding exactly what its manifest lists is ever replaced, so a
copy of an export (``cp -rL``: new inodes, regular files) or an export's tree a person added a photo to is
never deleted."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .files import O_NOFOLLOW

#: The file that marks a tree as written by an export: the manifest of every entry it wrote.
MARK = ".csl-export"
#: The largest manifest read (a tree of 10 million entries stays well under it).
MARK_MAX_BYTES = 1 << 30


def _entry(path: Path, st: os.stat_result) -> list:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    return [kind, st.st_ino]


def _walk(tree: Path):
    """Every entry under ``tree`` but the manifest: ``(relative path, lstat)``, never following a link."""
    stack = [tree]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = os.path.relpath(entry.path, tree)
                if relative == MARK:
                    continue
                st = entry.stat(follow_symlinks=False)
                yield relative, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(Path(entry.path))


def write_manifest(tree: Path) -> None:
    """Write :data:`MARK` in ``tree``: every entry the export wrote, with its kind and inode."""
    entries = {relative: _entry(tree / relative, st) for relative, st in _walk(tree)}
    fd = os.open(tree / MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump({"written_by": "csl-clean export; the next export replaces this folder, and only if it holds "
                                 "nothing but these entries", "entries": entries}, f)


def _read_manifest(tree: Path) -> dict | None:
    """The entries of ``tree``'s manifest, or ``None`` for a marker without one (an export before manifests
    existed wrote an empty marker); a marker that is not a regular file, too large or not a manifest: ``{}``
    (nothing is known to be the export's)."""
    try:
        fd = os.open(tree / MARK, os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MARK_MAX_BYTES:
            return {}
        data = f.read(MARK_MAX_BYTES + 1)
    if not data.strip() or not data.lstrip().startswith(b"{"):
        return None
    try:
        entries = json.loads(data).get("entries")
    except (ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def not_written_by_export(tree: Path) -> str | None:
    """The first entry of ``tree`` its export did not write (absent from the manifest, or of another kind or
    inode: a copy), or ``None``. A marker without a manifest (older exports) vouches only for links and
    folders: deleting them never loses a file."""
    manifest = _read_manifest(tree)
    for relative, st in _walk(tree):
        kind, inode = _entry(tree / relative, st)
        if manifest is None:
            if kind == "file":
                return str(tree / relative)
        elif manifest.get(relative) != [kind, inode]:
            return str(tree / relative)
    return None
