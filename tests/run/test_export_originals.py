"""The export never touches the originals: clashing names, links, leftovers of killed exports, an export folder that
is a link."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csl_core.run.decisions import DecisionLog
from csl_core.run.export import MARK as MARK_NAME
from csl_core.run.export import export_run, remove_export_leftovers, write_imagefolder
from tests.support.files import png, tree_digest

# ---------------------------------------------------------------- the export never touches the originals

@pytest.mark.parametrize("links", ["symlink", "copy"])
def test_export_with_clashing_names_and_links_changes_no_byte_outside_export(tmp_path, monkeypatch, links, make_run):
    src = tmp_path / "src"
    # Two classes that make one folder name, one file name repeated, a real file named like a generated
    # one (img__2.png), a name differing only in case, and a symlink among the originals.
    files = [png(src / "x" / "img.png", 10), png(src / "y" / "img.png", 20), png(src / "z" / "img__2.png", 30),
             png(src / "w" / "IMG.png", 40), png(src / "v" / "img.png", 50)]
    os.symlink(src / "x" / "img.png", src / "v" / "link.png")
    files.append(src / "v" / "link.png")
    classes = ["sandal/boot", "sandal_boot", "Sandal_boot"]
    labels = [0, 1, 0, 0, 1, 0]
    store = make_run(tmp_path / "run", paths=[str(f) for f in files], labels=labels, classes=classes,
                     epochs=1, config={}, loss=lambda epoch: np.linspace(0, 1, len(labels)))
    DecisionLog(store.path).record([3], "relabel", label=2)
    before = tree_digest(src)
    run_before = {k: v for k, v in tree_digest(store.path).items() if not k.startswith("export")}
    if links == "copy":
        def refuse(*args, **kwargs):
            raise OSError("links not supported here")
        monkeypatch.setattr("os.symlink", refuse)
        monkeypatch.setattr("os.link", refuse)
    result = export_run(store.path, imagefolder=True)
    again = export_run(store.path, imagefolder=True)                # over an existing tree
    assert tree_digest(src) == before
    assert {k: v for k, v in tree_digest(store.path).items()
            if not k.startswith("export") and k != "decisions.sqlite-wal" and k != "decisions.sqlite-shm"
            and k != "decisions.sqlite"} == {k: v for k, v in run_before.items() if not k.startswith("decisions")}
    entries = sorted(p for p in result.tree_path.rglob("*") if not p.is_dir() and p.name != MARK_NAME)
    assert len(entries) == len(files) and sum(again.links.values()) == len(files)
    assert again.links[links] == len(files)
    names = [str(p.relative_to(result.tree_path)).casefold() for p in entries]
    assert len(set(names)) == len(names)                           # no two entries share a name
    folders = {p.parent.name for p in entries}
    assert len(folders) == 3                                       # three classes, three folders
    # every entry shows the original it stands for
    shown = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in entries)
    assert shown == sorted(hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files)


def test_a_copy_never_writes_through_an_existing_link(tmp_path, monkeypatch):
    """The issue's mechanism: a link at the destination, link attempts failing, the copy fallback."""
    from csl_core.run import export as export_module

    original = png(tmp_path / "orig.png", 99)
    other = png(tmp_path / "other.png", 5)
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    (tmp_path / "t").mkdir()
    os.symlink(original, tmp_path / "t" / "img.png")

    def refuse(*args, **kwargs):
        raise OSError("links not supported here")

    monkeypatch.setattr("os.symlink", refuse)
    monkeypatch.setattr("os.link", refuse)
    with pytest.raises(FileExistsError):
        export_module._link(other, tmp_path / "t" / "img.png")
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest


def test_leftovers_of_killed_exports_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    export = tmp_path / "export"
    (export / f".imagefolder.old-{dead.pid}" / "a").mkdir(parents=True)
    (export / f".imagefolder.old-{dead.pid}" / MARK_NAME).write_text("an export's tree")  # restored, then replaced
    (export / f".imagefolder.{dead.pid}.abc.tmp" / "a").mkdir(parents=True)
    live = export / f".imagefolder.{os.getppid()}.xyz.tmp"
    live.mkdir()
    original = png(tmp_path / "orig.png")
    os.symlink(original, export / f".imagefolder.old-{dead.pid}" / "a" / "orig.png")
    write_imagefolder(np.array([str(original)]), np.array(["a"]), export / "imagefolder")
    assert sorted(p.name for p in export.iterdir()) == sorted(["imagefolder", live.name])
    assert original.is_file()                                  # a link inside a leftover is removed, not followed
    assert remove_export_leftovers(export / "imagefolder") == []


def test_an_export_folder_that_is_a_link_is_refused(tmp_path, make_run):
    store = make_run(tmp_path / "run", paths=[str(png(tmp_path / "a.png"))], labels=[0], classes=["a"],
                     epochs=1, config={}, loss=lambda epoch: np.linspace(0, 1, 1))
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", store.path / "export")
    with pytest.raises(ValueError, match="symbolic link"):
        export_run(store.path)
    assert list((tmp_path / "elsewhere").iterdir()) == []
