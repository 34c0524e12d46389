"""Data sources, injection and every kind of bad input, on small files written by the tests."""
from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csl_core.data import (
    DEBIAN_FASHION_MNIST,
    FASHION_CLASSES,
    DataError,
    ImageSource,
    build_training_set,
    inject_duplicates,
    inject_label_noise,
    load_cifar,
    load_csv,
    load_fashion_mnist,
    load_imagefolder,
    parse_spec,
)
from tests.support.files import write_image

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers that write real files

def write_truncated(path: Path, fmt: str) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_fashion(root: Path, *, n_train=12, n_test=5, compress=True) -> tuple[np.ndarray, np.ndarray]:
    train_x = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_y = np.arange(n_train, dtype=np.uint8) % 10
    write_idx(root / "train-images-idx3-ubyte", train_x, compress=compress)
    write_idx(root / "train-labels-idx1-ubyte", train_y, compress=compress)
    write_idx(root / "t10k-images-idx3-ubyte", RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              compress=compress)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test, dtype=np.uint8) % 10, compress=compress)
    return train_x, train_y


def write_cifar(root: Path, kind: str, per_batch: int = 4) -> dict[str, np.ndarray]:
    """The python-pickle layout of the real archives: rows of 3072 bytes, red plane, then green, then blue."""
    num_classes = 10 if kind == "cifar10" else 100
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        train_files, test_file, meta_file = [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"
        meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch,
                "num_vis": 3072}
        label_key = "labels"
    else:
        folder = root / "cifar-100-python"
        train_files, test_file, meta_file = ["train"], "test", "meta"
        meta = {"fine_label_names": [f"fine{c}" for c in range(100)],
                "coarse_label_names": [f"coarse{c}" for c in range(20)]}
        label_key = "fine_labels"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([*train_files, test_file]):
        data = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % num_classes for j in range(per_batch)]
        entry = {"batch_label": f"batch {i}", "data": data, label_key: labels,
                 "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]}
        if kind == "cifar100":
            entry["coarse_labels"] = [lab % 20 for lab in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = data
    with open(folder / meta_file, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return written


# ---------------------------------------------------------------- specs and the demo

def test_parse_spec_splits_kind_and_arguments():
    assert parse_spec("csv:labels.csv:images") == ("csv", ["labels.csv", "images"])
    assert parse_spec("imagefolder:C:/data/pets") == ("imagefolder", ["C:/data/pets"])
    assert parse_spec("Demo") == ("demo", [])


def test_unknown_source_names_the_known_ones():
    with pytest.raises(DataError, match="imagefolder"):
        build_training_set("mnist-ish")


def test_demo_injects_seeded_noise_and_duplicates_with_ground_truth():
    ts = build_training_set("demo", seed=0)
    n = len(ts)
    samples = ts.samples
    assert {"index", "sample_id", "label", "class_name", "true_label", "is_mislabeled", "is_duplicate"} <= set(
        samples.columns)
    flipped = samples["is_mislabeled"] & ~samples["is_duplicate"]
    assert flipped.sum() == int(np.floor(0.05 * n))
    assert (samples.loc[flipped, "label"] != samples.loc[flipped, "true_label"]).all()
    # each duplicate pair: a shows b's image with a label other than b's
    pairs = samples[samples["duplicate_of"] >= 0]
    assert len(pairs) == 2 * max(1, round(0.005 * n))
    for a, row in pairs.iterrows():
        b = row["duplicate_of"]
        assert samples.loc[b, "duplicate_of"] == a
        assert np.array_equal(ts.image(a), ts.image(b))
        assert samples.loc[a, "label"] != samples.loc[b, "label"]
    assert samples["sample_id"].is_unique
    again = build_training_set("demo", seed=0)
    assert again.samples.equals(samples)
    other = build_training_set("demo", seed=1)
    assert not np.array_equal(other.samples["is_mislabeled"], samples["is_mislabeled"])


def test_indexed_dataset_yields_image_label_index():
    ts = build_training_set("demo", inject_noise=0.0, inject_duplicates_pairs=0)
    x, y, index = ts.dataset()[[3, 0, 7]]
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.uint8
    assert index.tolist() == [3, 0, 7]
    assert y.tolist() == ts.labels[[3, 0, 7]].tolist()
    assert np.array_equal(x[0, 0].numpy(), ts.image(3)[..., 0])
    assert not ts.has_ground_truth


def test_label_noise_is_symmetric_seeded_and_respects_exclusions():
    labels = np.arange(2000) % 4
    noisy, flipped = inject_label_noise(labels, 0.1, 4, seed=3, exclude=np.arange(100))
    assert len(flipped) == 200 and flipped.min() >= 100
    assert np.array_equal(np.flatnonzero(noisy != labels), flipped)
    offsets = (noisy[flipped] - labels[flipped]) % 4
    assert set(np.unique(offsets)) == {1, 2, 3}  # every other class is reachable
    assert np.array_equal(inject_label_noise(labels, 0.1, 4, seed=3, exclude=np.arange(100))[0], noisy)
    with pytest.raises(ValueError, match="fraction"):
        inject_label_noise(labels, 1.0, 4, seed=0)


def test_duplicates_are_disjoint_pairs_with_conflicting_labels():
    image_index, labels, pairs = inject_duplicates(np.arange(50), np.arange(50) % 5, 6, 5, seed=1)
    assert pairs.shape == (6, 2) and len(np.unique(pairs)) == 12
    assert np.array_equal(image_index[pairs[:, 0]], pairs[:, 1])
    assert (labels[pairs[:, 0]] != labels[pairs[:, 1]]).all()
    with pytest.raises(ValueError, match="pairs"):
        inject_duplicates(np.arange(5), np.zeros(5), 3, 2, seed=0)


def test_float_or_out_of_range_labels_in_an_image_source_are_refused():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    with pytest.raises(DataError, match="2.5"):
        ImageSource(images, np.array([0.0, 2.5]), ["a", "b", "c"], ["x", "y"])
    with pytest.raises(DataError, match="0..1"):
        ImageSource(images, np.array([0, 2]), ["a", "b"], ["x", "y"])


# ---------------------------------------------------------------- Fashion-MNIST

@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, compress):
    train_x, train_y = write_fashion(tmp_path, compress=compress)
    ts = build_training_set(f"fashion-mnist:{tmp_path}", inject_noise=0.0)
    assert len(ts) == 12 and ts.classes == FASHION_CLASSES
    assert np.array_equal(ts.source.images[..., 0], train_x)
    assert np.array_equal(ts.labels, train_y)
    assert len(ts.test) == 5
    subset = build_training_set(f"fashion-mnist:{tmp_path}", subset=5, seed=2)
    assert len(subset) == 5
    assert subset.samples["sample_id"].tolist() == build_training_set(
        f"fashion-mnist:{tmp_path}", subset=5, seed=2).samples["sample_id"].tolist()


def test_fashion_mnist_truncated_or_missing_files_name_the_file(tmp_path):
    write_fashion(tmp_path, compress=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*truncated"):
        load_fashion_mnist(str(tmp_path))
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*not an idx"):
        load_fashion_mnist(str(tmp_path))
    with pytest.raises(DataError, match="not found in .*empty"):
        load_fashion_mnist(str(tmp_path / "empty"))


def test_fashion_mnist_out_of_range_label_is_refused(tmp_path):
    write_fashion(tmp_path, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(12, 11, np.uint8), compress=True)
    with pytest.raises(DataError, match="0..9"):
        load_fashion_mnist(str(tmp_path))


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package():
    train, test = load_fashion_mnist()
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert train.images.flags.writeable  # torch.from_numpy on it must not warn


# ---------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_reads_python_pickle_batches(tmp_path, kind):
    written = write_cifar(tmp_path, kind)
    train, test = load_cifar(kind, str(tmp_path))
    first = "data_batch_1" if kind == "cifar10" else "train"
    assert train.images.shape == ((20 if kind == "cifar10" else 4), 32, 32, 3)
    row = written[first][1]
    # pixel (0, 0) of image 1 is (red[0], green[0], blue[0]); pixel (0, 1) the next byte of each plane
    assert train.images[1, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert train.images[1, 0, 1].tolist() == [row[1], row[1025], row[2049]]
    assert len(train.classes) == (10 if kind == "cifar10" else 100)
    assert train.classes[3] == ("class3" if kind == "cifar10" else "fine3")
    assert train.labels[:4].tolist() == [0, 1, 2, 3]
    assert len(test) == 4
    ts = build_training_set(f"{kind}:{tmp_path}", inject_noise=0.25, seed=0)
    assert ts.samples["is_mislabeled"].sum() == int(np.floor(0.25 * len(ts)))


def test_cifar_truncated_batch_or_missing_folder_is_a_clear_error(tmp_path):
    write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3.*re-download"):
        load_cifar("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="cifar100 not found"):
        load_cifar("cifar100", str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- ImageFolder

def test_imagefolder_skips_and_lists_corrupt_truncated_and_non_image_files(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            write_image(tmp_path / c / f"{i}.png")
    bad = {
        tmp_path / "cat" / "garbage.png": "not an image",
        write_truncated(tmp_path / "cat" / "half.jpg", "JPEG"): "truncated",
        write_truncated(tmp_path / "dog" / "half.png", "PNG"): "truncated",
        tmp_path / "dog" / "notes.txt": "not an image file",
        tmp_path / "dog" / "text-named.jpg": "not an image",
        tmp_path / "readme.md": "not inside a class folder",
    }
    (tmp_path / "cat" / "garbage.png").write_bytes(RNG.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (tmp_path / "dog" / "notes.txt").write_text("hello")
    (tmp_path / "dog" / "text-named.jpg").write_text("not a jpeg at all")
    (tmp_path / "readme.md").write_text("about")
    source = load_imagefolder(str(tmp_path), image_size=8)
    assert source.classes == ["cat", "dog"]
    assert len(source) == 6 and np.bincount(source.labels).tolist() == [3, 3]
    reasons = {Path(s["id"]): s["reason"] for s in source.skipped}
    assert set(reasons) == set(bad)
    for path, words in bad.items():
        assert words in reasons[path], (path, reasons[path])


def test_imagefolder_mixed_modes_and_sizes_become_one_shape(tmp_path):
    write_image(tmp_path / "a" / "rgb.png", size=(10, 14), mode="RGB")
    write_image(tmp_path / "a" / "gray.png", size=(5, 5), mode="L", value=200)
    write_image(tmp_path / "b" / "rgba.png", size=(20, 8), mode="RGBA")
    write_image(tmp_path / "b" / "palette.gif", size=(7, 9), mode="P")
    write_image(tmp_path / "b" / "bw.bmp", size=(16, 16), mode="1")
    source = load_imagefolder(str(tmp_path), image_size=12)
    assert source.images.shape == (5, 12, 12, 3) and not source.skipped
    gray = source.ids.index(str(tmp_path / "a" / "gray.png"))
    assert (source.images[gray] == 200).all()  # grey converted to equal RGB channels


def test_imagefolder_all_grayscale_keeps_one_channel(tmp_path):
    for value, c in ((40, "x"), (220, "y")):
        write_image(tmp_path / c / "0.png", mode="L", value=value)
    source = load_imagefolder(str(tmp_path), image_size=8)
    assert source.channels == 1 and source.images.shape == (2, 8, 8, 1)
    assert source.images[0].min() == source.images[0].max() == 40 and (source.images[1] == 220).all()


def test_imagefolder_missing_root_empty_class_and_unreadable_class(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(str(tmp_path / "missing"))
    write_image(tmp_path / "full" / "0.png")
    (tmp_path / "hollow").mkdir()
    with pytest.raises(DataError, match="hollow.*empty"):
        load_imagefolder(str(tmp_path))
    (tmp_path / "hollow" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="'hollow' have no readable image"):
        load_imagefolder(str(tmp_path))


def test_imagefolder_training_set_keeps_paths(tmp_path):
    for c in ("a", "b"):
        write_image(tmp_path / c / "0.png")
    ts = build_training_set(f"imagefolder:{tmp_path}", image_size=8)
    assert ts.samples["path"].tolist() == [str(tmp_path / "a" / "0.png"), str(tmp_path / "b" / "0.png")]
    with pytest.raises(DataError, match="needs a path"):
        build_training_set("imagefolder:")


# ---------------------------------------------------------------- CSV

def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "img"
    for i in range(4):
        write_image(root / f"{i}.png", value=10 * i)
    return root


def test_csv_paths_relative_to_the_csv_folder_or_root(tmp_path, images):
    labels = write_csv(images / "labels.csv", "path,label\n0.png,cat\n1.png,dog\n2.png,cat\n")
    source = load_csv(str(labels), image_size=8)
    assert source.classes == ["cat", "dog"] and source.labels.tolist() == [0, 1, 0]
    assert source.ids == ["0.png", "1.png", "2.png"]
    elsewhere = write_csv(tmp_path / "meta" / "labels.csv", "filename,Label\n3.png,7\n0.png,10\n1.png,7\n")
    ts = build_training_set(f"csv:{elsewhere}:{images}", image_size=8)
    assert ts.classes == ["7", "10"]  # integer labels keep numeric order
    assert ts.labels.tolist() == [0, 1, 0]
    assert (ts.image(1) == 0).all() and (ts.image(0) == 30).all()


def test_csv_missing_file_root_or_columns(tmp_path, images):
    with pytest.raises(DataError, match="nope.csv.*does not exist"):
        load_csv(str(tmp_path / "nope.csv"))
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,a\n")
    with pytest.raises(DataError, match="image root .*nowhere.* does not exist"):
        load_csv(str(labels), str(tmp_path / "nowhere"))
    bad = write_csv(tmp_path / "cols.csv", "file_path,class\n0.png,a\n")
    with pytest.raises(DataError, match="cols.csv: needs .*'path' and 'label'.*found: file_path, class"):
        load_csv(str(bad), str(images))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"path,label\n\xff\xfe\x00,a\n")
    with pytest.raises(DataError, match="binary.csv: cannot parse as CSV.*UTF-8"):
        load_csv(str(binary), str(images))
    header_only = write_csv(tmp_path / "empty.csv", "path,label\n")
    with pytest.raises(DataError, match="empty.csv: no rows"):
        load_csv(str(header_only), str(images))


def test_csv_listed_file_missing_is_skipped_with_its_line(tmp_path, images):
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,a\nghost.png,b\n1.png,b\n2.png,a\n")
    source = load_csv(str(labels), str(images), image_size=8)
    assert source.ids == ["0.png", "1.png", "2.png"]
    assert len(source.skipped) == 1
    assert source.skipped[0]["id"] == "ghost.png" and "line 3" in source.skipped[0]["reason"]


def test_csv_class_whose_files_are_all_missing_is_an_empty_class(tmp_path, images):
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,a\nghost.png,b\n")
    with pytest.raises(DataError, match="'b' have no readable image"):
        load_csv(str(labels), str(images), image_size=8)


def test_csv_corrupt_image_is_skipped_and_listed(tmp_path, images):
    (images / "bad.png").write_bytes(b"definitely not a png")
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,a\nbad.png,a\n1.png,b\n")
    source = load_csv(str(labels), str(images), image_size=8)
    assert len(source) == 2
    assert [s["id"] for s in source.skipped] == ["bad.png"]


def test_csv_duplicate_paths_name_both_lines(tmp_path, images):
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,a\n1.png,b\n./0.png,b\n")
    with pytest.raises(DataError, match=r"labels.csv, line 4: .*'./0.png'.*'0.png' on line 2"):
        load_csv(str(labels), str(images))


@pytest.mark.parametrize("bad_label", ["2.5", "1e3", "nan", "3.0"])
def test_csv_float_labels_are_refused_with_the_line(tmp_path, images, bad_label):
    labels = write_csv(tmp_path / "labels.csv", f"path,label\n0.png,1\n1.png,2\n2.png,{bad_label}\n")
    with pytest.raises(DataError, match=rf"labels.csv, line 4: label '{bad_label}' is a number but not an integer"):
        load_csv(str(labels), str(images))


def test_csv_mixed_integer_and_name_labels_or_empty_label(tmp_path, images):
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,1\n1.png,cat\n")
    with pytest.raises(DataError, match="line 2: '1'.*line 3: 'cat'"):
        load_csv(str(labels), str(images))
    labels = write_csv(tmp_path / "labels.csv", "path,label\n0.png,1\n1.png,\n")
    with pytest.raises(DataError, match="line 3: empty label"):
        load_csv(str(labels), str(images))


def test_csv_mixed_modes_and_sizes(tmp_path):
    write_image(tmp_path / "a.png", size=(30, 10), mode="L", value=90)
    write_image(tmp_path / "b.jpg", size=(9, 9), mode="RGB", fmt="JPEG")
    write_image(tmp_path / "c.png", size=(4, 40), mode="RGBA", value=150)
    labels = write_csv(tmp_path / "labels.csv", "path,label\na.png,x\nb.jpg,y\nc.png,x\n")
    source = load_csv(str(labels), image_size=16)
    assert source.images.shape == (3, 16, 16, 3) and source.images.dtype == np.uint8
    assert source.classes == ["x", "y"] and source.labels.tolist() == [0, 1, 0]
    assert (source.images[0] == 90).all()    # grey into three equal channels, resized without new values
    assert (source.images[2] == 150).all()   # the alpha channel dropped, not blended into the colour


def test_16_bit_greyscale_is_rescaled_not_clipped(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040)  # 0 .. 65520
    for c in ("dark", "bright"):
        (tmp_path / c).mkdir()
    Image.fromarray(ramp).save(tmp_path / "dark" / "ramp16.png")  # a 16-bit greyscale PNG
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "bright" / "half.tiff")
    source = load_imagefolder(str(tmp_path), image_size=8)
    assert source.channels == 1 and not source.skipped
    ramp8 = source.images[source.ids.index(str(tmp_path / "dark" / "ramp16.png")), ..., 0]
    np.testing.assert_array_equal(ramp8, np.rint(ramp / 257.0).astype(np.uint8))  # 65535 -> 255, not clipped
    assert len(np.unique(ramp8)) == 64
    half = source.images[source.ids.index(str(tmp_path / "bright" / "half.tiff")), ..., 0]
    assert (half == 128).all()  # a float image in [0, 1]


def test_hidden_folders_at_the_root_are_reported_not_dropped_unseen(tmp_path):
    for c in ("a", "b"):
        write_image(tmp_path / c / "0.png")
    write_image(tmp_path / ".ipynb_checkpoints" / "a" / "0-checkpoint.png")
    (tmp_path / ".ipynb_checkpoints" / "notes.txt").write_text("x")
    source = load_imagefolder(str(tmp_path), image_size=8)
    assert source.classes == ["a", "b"] and len(source) == 2
    assert source.skipped == [{"id": str(tmp_path / ".ipynb_checkpoints"),
                               "reason": "hidden folder, not a class: 1 image(s) and 1 other file(s) not used"}]
