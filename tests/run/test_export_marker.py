"""#29 (1, 8): an export replaces only a tree holding nothing but what an export wrote there (its manifest
says what); a tree moved aside by a killed export comes back with any export, the CSV-only one too."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.errors import CSLError
from csl_core.run.export import MARK, TREE_NAME, export_run
from csl_core.run.store import RunStore


def _png(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (6, 6), color=value).save(path)
    return str(path)


def _run(tmp_path: Path) -> RunStore:
    paths = [_png(tmp_path / "data" / c / f"{i}.png", 40 * k + i) for k, c in enumerate("ab") for i in range(2)]
    labels = [0, 0, 1, 1]
    samples = pd.DataFrame({"index": range(4), "sample_id": paths, "label": labels,
                            "class_name": ["a", "a", "b", "b"], "image_index": range(4), "path": paths})
    store = RunStore.create(tmp_path / "run", meta={"classes": ["a", "b"], "source": "test", "config": {}},
                            samples=samples, epochs=1)
    store.write_epoch(0, {"loss": np.linspace(0, 1, 4, dtype=np.float32), "correct": np.ones(4, bool),
                          "margin": np.zeros(4, np.float32), "p_given": np.full(4, .5, np.float32),
                          "p_max": np.full(4, .5, np.float32)})
    return store


def test_a_dereferenced_copy_of_an_export_with_a_users_photo_is_never_deleted(tmp_path):
    store = _run(tmp_path)
    made = export_run(store.path, imagefolder=True, out_dir=tmp_path / "first").tree_path
    out = tmp_path / "mine"
    shutil.copytree(made, out / TREE_NAME, symlinks=False)          # `cp -rL`: regular files, marker copied
    photo = Path(_png(out / TREE_NAME / "a" / "holiday.png", 7))
    with pytest.raises(CSLError, match="did not write"):
        export_run(store.path, imagefolder=True, out_dir=out)
    assert photo.is_file() and (out / TREE_NAME / "b" / "0.png").is_file()


def test_a_file_added_to_an_exports_own_tree_stops_the_next_export(tmp_path):
    store = _run(tmp_path)
    tree = export_run(store.path, imagefolder=True, out_dir=tmp_path / "out").tree_path
    export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")     # its own tree: replaced
    note = tree / "b" / "notes.txt"
    note.write_text("mine")
    with pytest.raises(CSLError, match="notes.txt"):
        export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")
    assert note.read_text() == "mine"
    note.unlink()
    export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")     # as the export left it: replaced


def test_an_empty_marker_vouches_only_for_links(tmp_path):
    store = _run(tmp_path)
    tree = tmp_path / "out" / TREE_NAME
    tree.mkdir(parents=True)
    (tree / MARK).write_text("")                                      # the marker of older exports
    os.symlink(store.samples()["path"][0], tree / "link.png")
    export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")    # links only: replaced
    (tree / MARK).write_text("")
    photo = Path(_png(tree / "photo.png", 3))
    with pytest.raises(CSLError, match="photo.png"):
        export_run(store.path, imagefolder=True, out_dir=tmp_path / "out")
    assert photo.is_file()


def test_a_csv_only_export_puts_back_a_tree_a_killed_export_moved_aside(tmp_path):
    store = _run(tmp_path)
    out = tmp_path / "out"
    tree = export_run(store.path, imagefolder=True, out_dir=out).tree_path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.replace(tree, out / f".{TREE_NAME}.old-{dead.pid}")             # killed between its two renames
    export_run(store.path, out_dir=out)
    assert (tree / MARK).is_file() and not (out / f".{TREE_NAME}.old-{dead.pid}").exists()
