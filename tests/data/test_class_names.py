"""#29 (5): class names are normalised where they enter. "café" composed and decomposed are one class (or,
as two folders, refused as the same name); "cat" and "cat" + a zero-width space are never two classes that look
the same: an invisible character is refused, naming it."""
from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.data import load_csv, load_imagefolder
from csl_core.errors import CSLError
from csl_core.run.interop import import_run
from csl_core.run.writer import RunWriter

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def _png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)
    return path


def test_a_label_column_in_two_unicode_forms_is_one_class(tmp_path):
    rows = [(_png(tmp_path / f"{i}.png", 10 * i), NFC if i % 2 else NFD) for i in range(4)]
    rows += [(_png(tmp_path / f"d{i}.png", 200 + i), "dog") for i in range(2)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    source = load_csv(str(tmp_path / "labels.csv"), image_size=8)
    assert source.classes == [NFC, "dog"]
    assert np.bincount(source.labels).tolist() == [4, 2]


def test_two_folders_that_differ_only_in_unicode_form_are_refused(tmp_path):
    _png(tmp_path / "root" / NFC / "a.png")
    _png(tmp_path / "root" / NFD / "b.png", 50)
    _png(tmp_path / "root" / "dog" / "c.png", 90)
    if len({p.name for p in (tmp_path / "root").iterdir()}) < 3:
        pytest.skip("this file system stores one Unicode form")
    with pytest.raises(CSLError, match="Unicode form"):
        load_imagefolder(str(tmp_path / "root"), image_size=8)


@pytest.mark.parametrize("name", ["cat\u200b", "\u202ecat", "ca\ufefft"])
def test_an_invisible_character_in_a_class_name_is_refused_where_it_enters(tmp_path, name):
    with pytest.raises(CSLError, match="invisible character U\\+"):
        RunWriter(tmp_path / "w", classes=["cat", name], labels=[0, 1])
    x, y = _png(tmp_path / "x.png"), _png(tmp_path / "y.png", 30)
    (tmp_path / "labels.csv").write_text(f"path,label\n{x},cat\n{y},{name}\n")
    with pytest.raises(CSLError, match="invisible character"):
        load_csv(str(tmp_path / "labels.csv"), image_size=8)
    pd.DataFrame({"sample_id": ["a", "b"], "label": ["cat", name]}).to_csv(tmp_path / "samples.csv", index=False)
    np.save(tmp_path / "losses.npy", np.ones((2, 1), np.float32))
    with pytest.raises(CSLError, match="invisible character"):
        import_run(tmp_path / "run", samples_file=tmp_path / "samples.csv", losses_file=tmp_path / "losses.npy",
                   layout="samples-epochs")


def test_import_takes_decomposed_labels_as_the_composed_class(tmp_path):
    pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [NFD, NFC, "dog"]}).to_csv(tmp_path / "s.csv", index=False)
    np.save(tmp_path / "losses.npy", np.ones((3, 1), np.float32))
    store = import_run(tmp_path / "run", samples_file=tmp_path / "s.csv", losses_file=tmp_path / "losses.npy",
                       layout="samples-epochs")
    assert store.classes == [NFC, "dog"] and store.samples()["label"].tolist() == [0, 0, 1]
