"""Run folders as places on disk: where a run of a given name goes, the lock a trainer holds while it
writes one (taking it removes the temporary files a killed writer left behind), the runs under a root."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from .errors import RunLockedError
from .files import is_lock_held, lock_file, temp_glob
from .layout import LOCK, META, RUN_FILES, file_glob


@contextmanager
def run_lock(path: str | Path, owner: str = "trainer"):
    """Hold the lock of the run folder ``path`` (created if missing) for the ``with`` block.

    Taken before anything of a new run is written, so that two trainings started into the same folder
    at once cannot both write it. The kernel releases it when the holder dies; a second holder gets a
    :class:`RunLockedError` that names the first. Once held, the temporary files a killed writer left are
    removed (:func:`remove_leftovers`): no one else can be writing them then."""
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    file = path / LOCK
    try:
        with lock_file(file, owner=owner) as holder:
            if holder is not None:
                who = (f"process {holder.get('pid')} on {holder.get('host')} ({holder.get('owner', 'trainer')})"
                       if holder else "another process")
                raise RunLockedError(f"{path} is being trained by {who}; stop it first (the lock is released "
                                     "as soon as that process ends)")
            remove_leftovers(path)
            yield
    finally:
        if created:  # a run that failed before writing anything leaves no empty folder behind
            try:
                path.rmdir()
            except OSError:
                pass


def run_folder_for(root: str | Path, name: str) -> Path:
    """The folder of a run called ``name`` under ``root``; ``name`` must be one plain folder name, so
    that a run can only ever be written inside ``root`` (no ``..``, no separators, no hidden names)."""
    name = str(name)
    bad = (not name or name != name.strip() or Path(name).name != name or name.startswith(".")
           or any(c in name for c in "/\\\x00") or any(ord(c) < 32 for c in name))
    if bad:
        raise InputError(f"run name {name!r} must be a plain folder name: no slashes, not starting with '.', "
                         "no control characters")
    return Path(root) / name


def run_is_locked(path: str | Path) -> bool:
    """Whether a live process holds the lock of the run folder ``path`` now (see :func:`run_lock`)."""
    return is_lock_held(Path(path) / LOCK)


def remove_leftovers(path: str | Path) -> list[Path]:
    """Delete the temporary files that writers killed midway left in the run folder ``path``: those of every
    file of :data:`RUN_FILES` that only the lock holder writes (arrays, checkpoint, embeddings,
    probabilities, images), named as :func:`~csl_core.run.files.temp_glob` says. Call it only while holding
    the run's lock (:func:`run_lock` does). Returns what was removed."""
    path = Path(path)
    found = []
    for entry in RUN_FILES.values():
        if entry.locked_writer:
            folder, _, name = file_glob(entry.name).rpartition("/")
            found += (path / folder).glob(temp_glob(name))
    removed = []
    for file in found:
        if file.is_file() and not file.is_symlink():
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / META).is_file()]
    return sorted(runs, key=lambda p: (p / META).stat().st_mtime, reverse=True)
