"""The red-team corpus: bad input a careless user or an attacker gives, each kind made in the test.

Every kind must end in one of two ways: rejected with a message that says what and where, or accepted
with what was skipped or noted written down (the run's report). Never a crash, never silently wrong.
Then the named cases: the export clash, the malicious run folder, the simultaneous start, damaged files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from csl_core.config import TrainConfig
from csl_core.data import DataError, build_training_set, parse_spec
from csl_core.data import decode as data_decode
from csl_core.engine.train import train
from csl_core.run.decisions import DecisionLog
from csl_core.run.export import MARK as MARK_NAME
from csl_core.run.export import export_run, remove_export_leftovers, write_imagefolder
from csl_core.run.files import lock_file
from csl_core.run.folders import remove_leftovers, run_folder_for, run_lock
from csl_core.run.store import RunError, RunLockedError, RunStore, run_problems

ROOT = Path(__file__).resolve().parent.parent
MARKER = "pwned-by-pickle"


# ---------------------------------------------------------------- helpers

def png(path: Path, value: int = 128, size: tuple[int, int] = (6, 6), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value).save(path)
    return path


def folder_of_classes(root: Path, classes=("a", "b"), per_class: int = 2) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            png(root / name / f"{i}.png", value=40 * c + i)
    return root


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "path,label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return path


class Payload:
    """A pickle that, if ever unpickled without restriction, creates a file (the attack in the issue)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_cifar(root: Path, where: str = "data_batch_1") -> Path:
    """A cifar-10-batches-py folder whose ``where`` file runs code when unpickled the ordinary way."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(good, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    marker = root / MARKER
    (folder / where).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=2))
    return marker


def small_run(path: Path, n: int = 6, epochs: int = 2, finished: int = 2, config: dict | None = None) -> RunStore:
    samples = pd.DataFrame({"index": range(n), "sample_id": [f"s{i}" for i in range(n)],
                            "label": [i % 2 for i in range(n)], "class_name": ["a", "b"] * (n // 2),
                            "image_index": range(n)})
    store = RunStore.create(path, meta={"classes": ["a", "b"], "source": "test", "config": config or {"data": "demo"}},
                            samples=samples, epochs=epochs)
    for epoch in range(finished):
        store.write_epoch(epoch, {"loss": np.full(n, 1.0 + epoch, np.float32), "correct": np.ones(n, bool),
                                  "margin": np.zeros(n, np.float32), "p_given": np.full(n, .5, np.float32),
                                  "p_max": np.full(n, .5, np.float32)})
    return store


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` without following links: file bytes, link texts, folders."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


# ---------------------------------------------------------------- the bad-input corpus
# Each case builds its input under ``tmp`` and returns what to load: ("spec", spec) for --data, or a
# callable. ``expect`` is ("error", fragment of the message) or ("report", fragment of a skipped reason or note).

def _missing_root(tmp):
    return f"imagefolder:{tmp / 'nope'}"


def _root_is_a_file(tmp):
    (tmp / "f").write_text("x")
    return f"imagefolder:{tmp / 'f'}"


def _no_class_folders(tmp):
    (tmp / "r").mkdir()
    return f"imagefolder:{tmp / 'r'}"


def _empty_class(tmp):
    folder_of_classes(tmp / "r")
    (tmp / "r" / "c").mkdir()
    return f"imagefolder:{tmp / 'r'}"


def _only_hidden_files(tmp):
    folder_of_classes(tmp / "r")
    png(tmp / "r" / "c" / ".hidden.png")
    return f"imagefolder:{tmp / 'r'}"


def _random_bytes_png(tmp):
    folder_of_classes(tmp / "r")
    (tmp / "r" / "a" / "junk.png").write_bytes(os.urandom(300))
    return f"imagefolder:{tmp / 'r'}"


def _truncated_png(tmp):
    folder_of_classes(tmp / "r")
    png(tmp / "r" / "a" / "big.png", size=(64, 64), mode="RGB")
    data = (tmp / "r" / "a" / "big.png").read_bytes()
    (tmp / "r" / "a" / "big.png").write_bytes(data[: len(data) // 2])
    return f"imagefolder:{tmp / 'r'}"


def _empty_jpg(tmp):
    folder_of_classes(tmp / "r")
    (tmp / "r" / "a" / "zero.jpg").write_bytes(b"")
    return f"imagefolder:{tmp / 'r'}"


def _text_file_in_class(tmp):
    folder_of_classes(tmp / "r")
    (tmp / "r" / "a" / "notes.txt").write_text("hello")
    return f"imagefolder:{tmp / 'r'}"


def _file_at_root(tmp):
    folder_of_classes(tmp / "r")
    png(tmp / "r" / "stray.png")
    return f"imagefolder:{tmp / 'r'}"


def _hidden_folder(tmp):
    folder_of_classes(tmp / "r")
    png(tmp / "r" / ".ipynb_checkpoints" / "x.png")
    return f"imagefolder:{tmp / 'r'}"


def _dangling_link(tmp):
    folder_of_classes(tmp / "r")
    os.symlink(tmp / "gone.png", tmp / "r" / "a" / "dangling.png")
    return f"imagefolder:{tmp / 'r'}"


def _link_loop_folder(tmp):
    folder_of_classes(tmp / "r")
    os.symlink(tmp / "r" / "a", tmp / "r" / "a" / "again")
    return f"imagefolder:{tmp / 'r'}"


def _self_link(tmp):
    folder_of_classes(tmp / "r")
    os.symlink(tmp / "r" / "a" / "me.png", tmp / "r" / "a" / "me.png")
    return f"imagefolder:{tmp / 'r'}"


def _same_file_two_classes(tmp):
    folder_of_classes(tmp / "r", classes=("a", "b"), per_class=2)
    os.symlink(tmp / "r" / "a" / "0.png", tmp / "r" / "b" / "dup.png")    # one image, two labels
    return f"imagefolder:{tmp / 'r'}"


def _linked_class_folder(tmp):
    folder_of_classes(tmp / "r", classes=("a", "b"), per_class=2)
    os.symlink(tmp / "r" / "b", tmp / "r" / "c")             # class c is class b's folder again
    return f"imagefolder:{tmp / 'r'}"


def _same_file_twice_in_a_class(tmp):
    folder_of_classes(tmp / "r")
    os.symlink(tmp / "r" / "a" / "0.png", tmp / "r" / "a" / "0-again.png")
    return f"imagefolder:{tmp / 'r'}"


def _link_outside_root(tmp):
    folder_of_classes(tmp / "r")
    png(tmp / "elsewhere" / "e.png")
    os.symlink(tmp / "elsewhere" / "e.png", tmp / "r" / "a" / "e.png")
    return f"imagefolder:{tmp / 'r'}"


def _pipe_in_class(tmp):
    folder_of_classes(tmp / "r")
    os.mkfifo(tmp / "r" / "a" / "pipe.png")
    return f"imagefolder:{tmp / 'r'}"


def _csv_names_a_device(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x"), ("b.png", "y"), ("/dev/zero", "y")]))


def _classes_differ_in_case(tmp):
    folder_of_classes(tmp / "r", classes=("Bag", "bag"))
    return f"imagefolder:{tmp / 'r'}"


def _too_many_pixels(tmp, monkeypatch):
    monkeypatch.setattr(data_decode, "MAX_IMAGE_PIXELS", 1000)
    folder_of_classes(tmp / "r")
    png(tmp / "r" / "a" / "huge.png", size=(40, 40))
    return f"imagefolder:{tmp / 'r'}"


def _too_many_bytes(tmp, monkeypatch):
    monkeypatch.setattr(data_decode, "MAX_IMAGE_BYTES", 2000)
    folder_of_classes(tmp / "r")
    (tmp / "r" / "a" / "noise.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(
        tmp / "r" / "a" / "noise.png")
    return f"imagefolder:{tmp / 'r'}"


def _colon_in_csv_paths(tmp):
    return f"csv:{tmp}/pre:v2/labels.csv:{tmp}/pre:v2"


def _csv_missing(tmp):
    return f"csv:{tmp / 'none.csv'}"


def _csv_no_label_column(tmp):
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x")], header="path,class"))


def _csv_header_only(tmp):
    return "csv:" + str(write_csv(tmp / "l.csv", []))


def _csv_float_label(tmp):
    png(tmp / "a.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "2.5")]))


def _csv_mixed_labels(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "1"), ("b.png", "cat")]))


def _csv_duplicate_row(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x"), ("b.png", "y"), ("./a.png", "y")]))


def _csv_same_file_through_link(tmp):
    png(tmp / "img" / "a.png"), png(tmp / "img" / "b.png")
    os.symlink(tmp / "img", tmp / "alias")
    return "csv:" + str(write_csv(tmp / "l.csv", [("img/a.png", "x"), ("img/b.png", "y"), ("alias/a.png", "y")]))


def _csv_missing_image(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x"), ("b.png", "y"), ("gone.png", "y")]))


def _csv_dangling_link(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    os.symlink(tmp / "gone.png", tmp / "link.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x"), ("b.png", "y"), ("link.png", "y")]))


def _csv_dotdot_outside_root(tmp):
    png(tmp / "outside.png"), png(tmp / "data" / "a.png")
    return "csv:" + str(write_csv(tmp / "data" / "l.csv", [("a.png", "x"), ("../outside.png", "y")]))


def _csv_absolute_outside_root(tmp):
    png(tmp / "else" / "o.png"), png(tmp / "data" / "a.png")
    return "csv:" + str(write_csv(tmp / "data" / "l.csv", [("a.png", "x"), (str(tmp / "else" / "o.png"), "y")]))


def _csv_binary(tmp):
    (tmp / "l.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    return f"csv:{tmp / 'l.csv'}"


def _csv_empty_label(tmp):
    png(tmp / "a.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "")]))


def _csv_labels_differ_in_case(tmp):
    png(tmp / "a.png"), png(tmp / "b.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "Bag"), ("b.png", "bag")]))


def _csv_class_all_missing(tmp):
    png(tmp / "a.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x"), ("gone.png", "y")]))


def _csv_root_missing(tmp):
    png(tmp / "a.png")
    return "csv:" + str(write_csv(tmp / "l.csv", [("a.png", "x")])) + f":{tmp / 'noroot'}"


def _cifar_code_in_batch(tmp):
    malicious_cifar(tmp)
    return f"cifar10:{tmp}"


def _cifar_code_in_meta(tmp):
    malicious_cifar(tmp, where="batches.meta")
    return f"cifar10:{tmp}"


def _cifar_truncated(tmp):
    malicious_cifar(tmp)
    folder = tmp / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2)[:50])
    return f"cifar10:{tmp}"


def _cifar_not_a_dict(tmp):
    malicious_cifar(tmp)
    (tmp / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    return f"cifar10:{tmp}"


def _cifar_missing(tmp):
    return f"cifar10:{tmp}"


def _idx_truncated(tmp):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        with gzip.open(tmp / f"{name}.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") * 3 + b"\x00" * 20)
    return f"fashion-mnist:{tmp}"


def _idx_wrong_magic(tmp):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp / name).write_bytes(b"PK\x03\x04 not idx at all")
    return f"fashion-mnist:{tmp}"


def _unknown_kind(tmp):
    return "imagenet:/data"


def _nul_in_spec(tmp):
    return "imagefolder:/tmp/x\x00y"


def _demo_with_path(tmp):
    return "demo:/etc"


def _noise_on_one_class(tmp):
    folder_of_classes(tmp / "r", classes=("only",))
    return f"imagefolder:{tmp / 'r'}", {"inject_noise": 0.1}


def _link_to_the_root_in_a_class(tmp):
    folder_of_classes(tmp / "r", classes=("cat", "dog"))
    os.symlink("..", tmp / "r" / "cat" / "loop")              # cat/loop -> .. : the whole tree again
    return f"imagefolder:{tmp / 'r'}"


def _negative_subset(tmp):
    folder_of_classes(tmp / "r")
    return f"imagefolder:{tmp / 'r'}", {"subset": -3}


CORPUS = [
    (_missing_root, ("error", "does not exist")),
    (_root_is_a_file, ("error", "not a folder")),
    (_no_class_folders, ("error", "no class folders")),
    (_empty_class, ("error", "is empty")),
    (_only_hidden_files, ("error", "is empty")),
    (_random_bytes_png, ("report", "not an image")),
    (_truncated_png, ("report", "corrupt or truncated")),
    (_empty_jpg, ("report", "not an image")),
    (_text_file_in_class, ("report", "not an image file")),
    (_file_at_root, ("report", "not inside a class folder")),
    (_hidden_folder, ("report", "hidden folder")),
    (_dangling_link, ("report", "dangling symbolic link")),
    (_link_loop_folder, ("report", "symbolic-link loop")),
    (_self_link, ("report", "leads back to itself")),
    (_same_file_two_classes, ("report", "under another class")),
    (_same_file_twice_in_a_class, ("report", "listed twice")),
    (_linked_class_folder, ("error", "no readable image")),
    (_link_outside_root, ("report", "leads outside the ImageFolder root")),
    (_pipe_in_class, ("report", "not a regular file")),
    (_csv_names_a_device, ("report", "not a regular file")),
    (_classes_differ_in_case, ("error", "differ only in case")),
    (_too_many_pixels, ("report", "too large to decode")),
    (_too_many_bytes, ("report", "too large to decode")),
    (_colon_in_csv_paths, ("error", "%3A")),
    (_csv_missing, ("error", "does not exist")),
    (_csv_no_label_column, ("error", "columns 'path' and 'label'")),
    (_csv_header_only, ("error", "no rows")),
    (_csv_float_label, ("error", "not an integer")),
    (_csv_mixed_labels, ("error", "mix integers")),
    (_csv_duplicate_row, ("error", "same file")),
    (_csv_same_file_through_link, ("error", "same file")),
    (_csv_missing_image, ("report", "file not found")),
    (_csv_dangling_link, ("report", "dangling symbolic link")),
    (_csv_dotdot_outside_root, ("report", "leads outside the image root")),
    (_csv_absolute_outside_root, ("report", "leads outside the image root")),
    (_csv_binary, ("error", "l.csv")),
    (_csv_empty_label, ("error", "empty label")),
    (_csv_labels_differ_in_case, ("error", "differ only in case")),
    (_csv_class_all_missing, ("error", "no readable image")),
    (_csv_root_missing, ("error", "does not exist")),
    (_cifar_code_in_batch, ("error", "refers to posix.system")),
    (_cifar_code_in_meta, ("error", "refers to posix.system")),
    (_cifar_truncated, ("error", "cannot read CIFAR batch")),
    (_cifar_not_a_dict, ("error", "not a CIFAR batch")),
    (_cifar_missing, ("error", "cifar10 not found")),
    (_idx_truncated, ("error", "truncated idx")),
    (_idx_wrong_magic, ("error", "not an idx file")),
    (_unknown_kind, ("error", "unknown data source")),
    (_nul_in_spec, ("error", "not a text spec")),
    (_demo_with_path, ("error", "demo takes no path")),
    (_noise_on_one_class, ("error", "needs at least two classes")),
    (_negative_subset, ("error", "--subset must be positive")),
    (_link_to_the_root_in_a_class, ("report", "symbolic-link loop")),          # round two, 12
]


@pytest.mark.parametrize("make, expect", CORPUS, ids=[make.__name__.strip("_") for make, _ in CORPUS])
def test_bad_input_is_rejected_with_a_message_or_reported(make, expect, tmp_path, monkeypatch):
    tmp = tmp_path / "in"
    tmp.mkdir()
    made = make(tmp, monkeypatch) if make.__code__.co_argcount == 2 else make(tmp)
    spec, options = made if isinstance(made, tuple) else (made, {})
    outcome, fragment = expect
    if outcome == "error":
        with pytest.raises(DataError) as caught:
            build_training_set(spec, image_size=8, **options)
        assert fragment in str(caught.value)
    else:
        training_set = build_training_set(spec, image_size=8, **options)
        source = training_set.source
        said = [e["reason"] for e in source.skipped] + [e["note"] for e in source.notes]
        assert any(fragment in line for line in said), said
        assert len(training_set) > 0
        # whatever is used is each real file once, each with one label
        real = [os.path.realpath(p) for p in source.paths]
        assert len(real) == len(set(real))
    assert not (tmp / MARKER).exists()


def test_corpus_has_a_case_per_kind():
    assert len(CORPUS) >= 45 and len({make.__name__ for make, _ in CORPUS}) == len(CORPUS)


def test_round_two_grows_the_corpus_by_its_kinds():
    """Round two's kinds live beside this corpus: bad imports (test_hardening_numbers), crafted run folders
    (test_hardening_pages), links planted in a run folder (test_hardening_files), and the data kind above."""
    from test_hardening_numbers import IMPORT_KINDS
    from test_hardening_pages import CRAFTED

    assert len(set(IMPORT_KINDS)) == len(IMPORT_KINDS) >= 15 and len(set(CRAFTED)) == len(CRAFTED) >= 20
    assert _link_to_the_root_in_a_class in [make for make, _ in CORPUS]


# ---------------------------------------------------------------- data read right, not silently wrong

def test_a_path_with_a_colon_is_the_path_it_says(tmp_path):
    folder_of_classes(tmp_path / "pre", classes=("wrong1", "wrong2"))
    folder_of_classes(tmp_path / "pre:v2", classes=("right1", "right2"))
    assert build_training_set(f"imagefolder:{tmp_path}/pre:v2", image_size=8).classes == ["right1", "right2"]
    write_csv(tmp_path / "pre:v2" / "l.csv", [("right1/0.png", "x"), ("right2/0.png", "y")])
    quoted = f"csv:{tmp_path}/pre%3Av2/l.csv"
    assert parse_spec(quoted)[1] == [f"{tmp_path}/pre:v2/l.csv"]
    assert len(build_training_set(quoted, image_size=8)) == 2


def test_float_images_are_stretched_not_clipped(tmp_path):
    ramp = np.linspace(0.0, 4.0, 64, dtype=np.float32).reshape(8, 8)    # an HDR range above 1.0
    Image.fromarray(ramp, "F").save(tmp_path / "hdr.tif")
    out = data_decode._decode(str(tmp_path / "hdr.tif"), 8, "L")[..., 0]
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 32   # not one clipped block
    assert (np.diff(out.ravel().astype(int)) >= 0).all()
    negative = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    negative[0, 0] = np.nan
    Image.fromarray(negative, "F").save(tmp_path / "neg.tif")
    out = data_decode._decode(str(tmp_path / "neg.tif"), 8, "L")[..., 0]
    assert out[0, 1] < 10 and out[-1, -1] == 255 and out[0, 0] == 0


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32), np.uint8)
    pixels[:, :16] = 255                                   # left half white, as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6                                       # "rotate 90 degrees clockwise to view"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = data_decode._decode(str(tmp_path / "phone.jpg"), 16, "L")[..., 0].astype(int)
    assert out[:6].mean() > 200 and out[-6:].mean() < 50   # upright: the white half is on top


def test_decoding_threads_share_one_pixel_budget():
    import threading
    import time

    budget = data_decode.PixelBudget(100)
    inside, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with budget.take(n):                               # an image over the budget decodes alone
            with lock:
                inside[0] += min(n, 100)
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= min(n, 100)

    threads = [threading.Thread(target=work, args=(n,)) for n in (60, 60, 30, 30, 500)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert peak[0] <= 100 and inside[0] == 0


# ---------------------------------------------------------------- the export never touches the originals

def _run_over_files(path: Path, paths: list[str], labels: list[int], classes: list[str]) -> RunStore:
    n = len(paths)
    samples = pd.DataFrame({"index": range(n), "sample_id": paths, "label": labels,
                            "class_name": [classes[c] for c in labels], "image_index": range(n), "path": paths})
    store = RunStore.create(path, meta={"classes": classes, "source": "test", "config": {}}, samples=samples, epochs=1)
    store.write_epoch(0, {"loss": np.linspace(0, 1, n, dtype=np.float32), "correct": np.ones(n, bool),
                          "margin": np.zeros(n, np.float32), "p_given": np.full(n, .5, np.float32),
                          "p_max": np.full(n, .5, np.float32)})
    return store


@pytest.mark.parametrize("links", ["symlink", "copy"])
def test_export_with_clashing_names_and_links_changes_no_byte_outside_export(tmp_path, monkeypatch, links):
    src = tmp_path / "src"
    # Two classes that make one folder name, one file name repeated, a real file named like a generated
    # one (img__2.png), a name differing only in case, and a symlink among the originals.
    files = [png(src / "x" / "img.png", 10), png(src / "y" / "img.png", 20), png(src / "z" / "img__2.png", 30),
             png(src / "w" / "IMG.png", 40), png(src / "v" / "img.png", 50)]
    os.symlink(src / "x" / "img.png", src / "v" / "link.png")
    files.append(src / "v" / "link.png")
    classes = ["sandal/boot", "sandal_boot", "Sandal_boot"]
    labels = [0, 1, 0, 0, 1, 0]
    store = _run_over_files(tmp_path / "run", [str(f) for f in files], labels, classes)
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


def test_an_export_folder_that_is_a_link_is_refused(tmp_path):
    store = _run_over_files(tmp_path / "run", [str(png(tmp_path / "a.png"))], [0], ["a"])
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", store.path / "export")
    with pytest.raises(ValueError, match="symbolic link"):
        export_run(store.path)
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ---------------------------------------------------------------- a run folder never runs code

def test_a_run_folder_naming_a_malicious_cifar_folder_runs_no_code(tmp_path):
    from csl_core.run.duplicates import run_images
    from csl_core.run.images import sample_image

    marker = malicious_cifar(tmp_path / "data")
    store = small_run(tmp_path / "run", config={"data": f"cifar10:{tmp_path / 'data'}", "download": True})
    with pytest.raises(DataError, match="refers to posix.system"):
        sample_image(store.path, 0)                            # the Galleries page's image lookup
    assert run_images(store) is None                           # the duplicate finder's
    with pytest.raises((RunError, DataError)):
        train(TrainConfig(device="cpu"), store.path, resume=True)
    assert not marker.exists()


def test_a_run_folder_config_is_checked_before_use(tmp_path):
    where = tmp_path / "meta.json"
    with pytest.raises(ValueError, match="'epochs' is '3'"):
        TrainConfig.from_run({"data": "demo", "epochs": "3"}, where)
    with pytest.raises(ValueError, match="unknown data source"):
        TrainConfig.from_run({"data": "http://evil/x"}, where)
    with pytest.raises(ValueError, match="'subset' is True"):
        TrainConfig.from_run({"data": "demo", "subset": True}, where)
    config = TrainConfig.from_run({"data": "cifar10:/x", "download": True, "unknown": 1}, where)
    assert config.download is False                            # a shared run folder downloads nothing


def test_every_config_field_a_run_stores_is_read_back_checked(tmp_path):
    from dataclasses import asdict

    where = tmp_path / "meta.json"
    stored = asdict(TrainConfig(data="demo", inject_noise=0.1, noise_kind="pairflip", noise_map=[1, 2, 0],
                                pretrained=True, weights="w.pth"))
    assert asdict(TrainConfig.from_run(stored, where)) == {**stored, "download": False}
    with pytest.raises(ValueError, match="noise_map"):
        TrainConfig.from_run({**stored, "noise_map": ["__import__('os')"]}, where)


def test_a_field_name_cannot_lead_out_of_the_run_folder(tmp_path):
    store = small_run(tmp_path / "run")
    meta = json.loads((store.path / "meta.json").read_text())
    meta["fields"] = ["loss", "../../victim"]
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="not a plain name"):
        RunStore(store.path)


def test_checkpoints_load_weights_only(tmp_path):
    store = small_run(tmp_path / "run")
    marker = tmp_path / MARKER
    torch.save({"epoch": 1, "evil": Payload(marker)}, store.path / "checkpoint.pt")
    with pytest.raises(RunError, match="cannot be read") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value) and not marker.exists()


# ---------------------------------------------------------------- two trainings into one folder

def test_a_training_waits_for_no_one_and_writes_nothing_while_another_holds_the_folder(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):                                        # another training, still loading its data
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            train(TrainConfig(data="demo", epochs=1, device="cpu"), out)
        assert sorted(p.name for p in out.iterdir()) == ["lock"]   # no meta.json, no samples.csv
    assert not (out / "lock").exists()


def test_two_trainings_started_at_once_leave_one_consistent_run(tmp_path):
    """The issue's race: both passed the "already exists" check before either locked, and the loser
    rewrote meta.json and samples.csv. Each thread opens the lock file itself, as a process would."""
    import threading

    out = tmp_path / "run"
    start = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def trainer(subset: int) -> None:
        config = TrainConfig(data="demo", epochs=1, device="cpu", subset=subset, compute_embeddings=False)
        start.wait()
        try:
            outcomes[subset] = train(config, out)
        except RunError as e:
            outcomes[subset] = e

    threads = [threading.Thread(target=trainer, args=(n,)) for n in (200, 300)]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    failed = [o for o in outcomes.values() if isinstance(o, RunError)]
    assert len(outcomes) == 2 and len(failed) == 1, outcomes
    assert "being trained" in str(failed[0]) or "already holds a run" in str(failed[0])
    store = RunStore(out)
    config = TrainConfig.from_run(store.meta["config"], out)
    rebuilt = build_training_set(config.data, subset=config.subset, seed=config.seed)
    assert store.samples()["sample_id"].tolist() == rebuilt.samples["sample_id"].tolist()
    assert store.meta.get("completed") and store.num_samples == config.subset
    assert not (out / "lock").exists()


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    file = tmp_path / "lock"
    script = ("import sys, time\nfrom csl_core.run.files import lock_file\n"
              "with lock_file(sys.argv[1]) as h:\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with lock_file(file) as record:
        assert record["pid"] == holder.pid
    holder.kill()
    holder.wait()
    with lock_file(file) as record:
        assert record is None


# ---------------------------------------------------------------- damaged runs

def test_a_truncated_meta_json_names_the_file_and_the_dashboard_skips_the_run(tmp_path):
    from csl_core.run.folders import list_runs

    good = small_run(tmp_path / "runs" / "good")
    bad = small_run(tmp_path / "runs" / "bad")
    text = (bad.path / "meta.json").read_text()
    (bad.path / "meta.json").write_text(text[: len(text) // 3])
    with pytest.raises(RunError, match="meta.json is damaged"):
        RunStore(bad.path)
    assert list_runs(tmp_path / "runs")[0] == bad.path        # the newest ...
    healthy = [p for p in list_runs(tmp_path / "runs") if not run_problems(p)]
    assert healthy == [good.path]                              # ... but not healthy
    assert "meta.json" in run_problems(bad.path)[0]


def test_a_truncated_array_is_refused_not_zero_padded(tmp_path):
    store = small_run(tmp_path / "run", n=40, epochs=3, finished=2)
    loss = store.path / "arrays" / "loss.npy"
    size = loss.stat().st_size
    with open(loss, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(RunError, match="loss.npy is damaged"):
        store.scores()
    with pytest.raises(RunError, match="loss.npy is damaged"):
        store.write_epoch(2, {"loss": np.ones(40, np.float32), "correct": np.ones(40, bool),
                              "margin": np.zeros(40, np.float32), "p_given": np.ones(40, np.float32),
                              "p_max": np.ones(40, np.float32)})
    assert loss.stat().st_size == size - 100                   # not padded with zeros
    assert any("loss.npy" in p for p in run_problems(store.path))
    with pytest.raises(RunError, match="cannot be resumed.*loss.npy"):
        train(TrainConfig(device="cpu"), store.path, resume=True)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_checkpoint_is_refused_before_resume(tmp_path, damage):
    store = small_run(tmp_path / "run", n=6, epochs=3, finished=1)
    store.save_checkpoint({"epoch": 1, "model": {"w": torch.arange(4096, dtype=torch.float32)}})
    assert store.load_checkpoint()["epoch"] == 1
    file = store.path / "checkpoint.pt"
    data = bytearray(file.read_bytes())
    if damage == "flip":
        rng = np.random.default_rng(0)
        for i in rng.choice(np.arange(len(data) // 2, len(data) - 200), 64, replace=False):
            data[i] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    file.write_bytes(bytes(data))
    with pytest.raises(RunError, match="checkpoint.pt") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value)
    with pytest.raises(RunError, match="cannot be resumed.*checkpoint.pt"):
        train(TrainConfig(device="cpu"), store.path, resume=True)


def test_a_truncated_checkpoint_without_a_recorded_checksum_is_a_clear_error(tmp_path):
    store = small_run(tmp_path / "run", finished=1)
    torch.save({"epoch": 1, "model": {"w": torch.zeros(2048)}}, store.path / "checkpoint.pt")  # older run
    data = (store.path / "checkpoint.pt").read_bytes()
    (store.path / "checkpoint.pt").write_bytes(data[:1000])
    with pytest.raises(RunError, match="checkpoint.pt cannot be read") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value)


def test_orphan_temporary_files_are_removed_when_the_trainer_takes_the_run(tmp_path):
    store = small_run(tmp_path / "run")
    orphans = [store.path / ".checkpoint.pt.abc123.tmp", store.path / ".embeddings.npy.x9.tmp",
               store.path / "arrays" / ".loss.npy.tmp"]
    for file in orphans:
        file.write_bytes(b"half")
    keep = store.path / "notes.txt"
    keep.write_text("mine")
    assert sorted(remove_leftovers(store.path)) == sorted(orphans)
    assert keep.read_text() == "mine" and not any(p.exists() for p in orphans)


# ---------------------------------------------------------------- the dashboard

def test_a_run_name_cannot_leave_the_runs_folder(tmp_path):
    for name in ("..", ".", "../x", "a/b", "", ".hidden", "a\\b", "x\x00"):
        with pytest.raises(ValueError, match="plain folder name"):
            run_folder_for(tmp_path / "runs", name)
    assert run_folder_for(tmp_path / "runs", "demo-1") == tmp_path / "runs" / "demo-1"


def test_the_dashboard_listens_on_localhost_only_and_sends_no_statistics():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    # the config's comment names the section that says how to serve it to others on purpose: it must exist
    import re

    pointer = re.search(r'see "([^"]+)" in (\S+?)\.?\n', (ROOT / ".streamlit" / "config.toml").read_text())
    assert pointer, "config.toml says where serving to others is explained"
    section, document = pointer.groups()
    text = (ROOT / document).read_text()
    assert f"## {section}\n" in text
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    assert "--server.address" in body and "127.0.0.1" in body


def test_undo_in_one_tab_never_undoes_another_tabs_batch(tmp_path):
    store = small_run(tmp_path / "run")
    log = DecisionLog(store.path)
    first = log.record([0], "drop", source="galleries", tab="tab-1")
    log.record([1], "drop", source="galleries", tab="tab-2")   # the other tab acts last
    assert log.undo(source="galleries", tab="tab-1") == first
    state = log.effective(6, np.zeros(6, int))["action"].tolist()
    assert state[:2] == ["undecided", "drop"]
    assert log.undo(source="galleries", tab="tab-1") is None  # nothing more of tab 1's
    assert set(log.batches()["tab"]) == {"tab-1", "tab-2"}


def test_an_older_decision_log_gets_the_tab_column(tmp_path):
    import sqlite3

    store = small_run(tmp_path / "run")
    with sqlite3.connect(store.path / "decisions.sqlite") as db:
        db.executescript("CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, "
                         "source TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', created REAL NOT NULL, "
                         "undoes INTEGER); CREATE TABLE decisions (batch INTEGER NOT NULL, sample INTEGER NOT NULL, "
                         "label INTEGER); INSERT INTO batches(action, created) VALUES ('drop', 0); "
                         "INSERT INTO decisions VALUES (1, 3, NULL);")
    log = DecisionLog(store.path)
    assert log.undo(tab="someone") is None                      # the old batch belongs to no tab
    assert log.undo() == 1


def test_the_dashboard_opens_the_newest_healthy_run_and_shows_a_damaged_one_as_damaged(tmp_path, monkeypatch):
    from streamlit import config as st_config
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    good = small_run(runs / "good")
    bad = small_run(runs / "bad")
    text = (bad.path / "meta.json").read_text()
    (bad.path / "meta.json").write_text(text[:40])                   # truncated: the newest run
    os.utime(good.path / "meta.json", (1, 1))
    monkeypatch.setenv("CSL_RUNS_DIR", str(runs))
    sys.path.insert(0, str(ROOT))
    from pages._common import job_registry

    job_registry.clear()          # jobs of earlier tests in this process would be listed first
    st_config.set_option("runner.magicEnabled", False)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        assert not at.exception
        assert at.session_state["run_path"] == str(good.path)
        picker = at.sidebar.selectbox[0]
        assert picker.format_func(str(bad.path)).endswith("(damaged)")
        at.switch_page("pages/galleries.py").run()
        assert not at.exception
        picker = at.sidebar.selectbox[0]
        picker.set_value(str(bad.path)).run()
        assert not at.exception
        assert any("damaged" in e.value and "meta.json" in e.value for e in at.error)
    finally:
        st_config.set_option("runner.magicEnabled", True)


@pytest.mark.parametrize("damage, words", [
    ("truncate-meta", "meta.json is damaged"),
    ("meta-not-object", "meta.json is damaged"),
    ("meta-missing-key", "lacks 'num_samples'"),
    ("truncate-samples", "samples.csv"),
    ("truncate-loss", "loss.npy is damaged"),
    ("truncate-probabilities", "probabilities.npy is damaged"),
    ("truncate-embeddings", "embeddings.npy is damaged"),
])
def test_the_cli_names_the_damaged_file_without_a_traceback(tmp_path, capsys, damage, words):
    from csl_core.cli import main
    from csl_core.run.files import atomic_save_npy

    store = small_run(tmp_path / "run", n=40)
    meta = store.path / "meta.json"
    if damage == "truncate-meta":
        meta.write_text(meta.read_text()[:30])
    elif damage == "meta-not-object":
        meta.write_text("[1, 2, 3]")
    elif damage == "meta-missing-key":
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "num_samples"}))
    elif damage == "truncate-samples":
        table = store.path / "samples.csv"
        table.write_text("\n".join(table.read_text().splitlines()[:10]) + "\n")
    elif damage == "truncate-loss":
        with open(store.path / "arrays" / "loss.npy", "r+b") as f:
            f.truncate(200)
    else:
        name = damage.split("-")[1]
        atomic_save_npy(store.path / f"{name}.npy", np.full((40, 8), 0.5, np.float32))
        with open(store.path / f"{name}.npy", "r+b") as f:
            f.truncate(700)
    command = (["duplicates", str(store.path), "--embedding-neighbours"] if damage == "truncate-embeddings"
               else ["scores", str(store.path)])
    assert main(command) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize("options, words", [
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--inject-noise", "1.5"], "expected a fraction in [0, 1)"),
    (["--subset", "0"], "--subset must be positive"),
])
def test_bad_training_options_exit_2_and_write_nothing(tmp_path, capsys, options, words):
    from csl_core.cli import main

    try:
        code = main(["train", "--data", "demo", "--out", str(tmp_path / "run"), "--quiet", *options])
    except SystemExit as e:  # refused by the option parser itself
        code = e.code
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_sample_table_naming_a_pipe_or_a_device_opens_neither(tmp_path):
    from csl_core.run.images import sample_image

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    paths = [str(pipe), "/dev/zero"]
    store = _run_over_files(tmp_path / "run", paths, [0, 0], ["a"])
    for index in range(2):
        with pytest.raises(FileNotFoundError, match="is not a file"):
            sample_image(store.path, index)                  # would block on the pipe, or read forever


def test_a_training_of_exactly_four_steps_does_not_crash_the_schedule(tmp_path):
    config = TrainConfig(data="demo", epochs=1, subset=512, batch_size=128, device="cpu", compute_embeddings=False)
    result = train(config, tmp_path / "run")                     # 4 steps: OneCycleLR divided by zero
    store = RunStore(tmp_path / "run")
    assert result.finished_epochs == 1 and store.meta["completed"] and np.isfinite(store.csl()).all()
    assert store.report()["epochs"][0]["lr"] < 0.5 * config.lr   # the schedule stepped on past its peak
