"""The bad-input corpus: bad input a careless user or an attacker gives, each kind made in the test.

Every kind must end in one of two ways: rejected with a message that says what and where, or accepted
with what was skipped or noted written down (the run's report). Never a crash, never silently wrong.
"""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from csl_core.data import DataError, build_training_set
from csl_core.data import decode as data_decode
from tests.support.files import MARKER, folder_of_classes, malicious_cifar, png, write_csv

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
