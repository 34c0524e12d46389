"""The cheap look at a data source before a job starts: what passes, and what each failure says."""
from __future__ import annotations

import pytest

from csl_core.data import DataError, check_source


def test_a_good_folder_and_csv_pass_with_a_summary(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        (tmp_path / "pets" / name / "a.png").write_bytes(b"")
    assert check_source(f"imagefolder:{tmp_path / 'pets'}") == "2 image files in 2 class folders"
    (tmp_path / "labels.csv").write_text("filename,label\npets/cat/a.png,cat\npets/dog/a.png,dog\n")
    assert check_source(f"csv:{tmp_path / 'labels.csv'}") == "2 rows in labels.csv"
    assert "demo" in check_source("demo")


@pytest.mark.parametrize("make, spec, message", [
    (lambda root: None, "imagefolder:{root}/missing", "does not exist"),
    (lambda root: (root / "file.png").write_bytes(b""), "imagefolder:{root}/file.png", "is a file, not a folder"),
    (lambda root: (root / "empty" / "cat").mkdir(parents=True), "imagefolder:{root}/empty",
     "class folder 'cat' holds no image file"),
    (lambda root: (root / "x.csv").write_text("path,class\na.png,cat\n"), "csv:{root}/x.csv",
     "line 1: needs a header with columns 'path' and 'label'"),
    (lambda root: (root / "y.csv").write_text("path,label\n"), "csv:{root}/y.csv", "no rows below the header"),
    (lambda root: None, "csv:{root}", "is a folder"),
    (lambda root: None, "imagefolder:", "needs a path"),
])
def test_each_bad_source_says_what_and_where(tmp_path, make, spec, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        check_source(spec.format(root=tmp_path))
