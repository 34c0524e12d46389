"""`csl-clean duplicates --crop-limit --keep`: the crop tier's limit and which copy of each group to keep are
settings; the CSV names each group's kinds and marks the member to keep; keep by file reads the files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.cli import main
from csl_core.run.duplicate_files import kept_members
from csl_core.run.duplicates import find_duplicates
from csl_core.run.store import RunStore


def test_duplicates_takes_the_crop_limit_and_the_keep_policy(demo_run, tmp_path, capsys):
    out = tmp_path / "groups.csv"
    assert main(["duplicates", str(demo_run), "--crop-limit", "0", "--keep", "first", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "crop limit 0.0" in printed and "keep: first" in printed
    table = pd.read_csv(out, keep_default_na=False)
    assert not table["kinds"].str.contains("crop").any()
    kept = table[table["keep"]]
    assert len(kept) == table["group"].nunique()  # one member kept in each group: the first
    assert kept.set_index("group")["index"].sort_index().equals(table.groupby("group")["index"].min())
    assert main(["duplicates", str(demo_run), "--crop-limit", "0.01", "--csv", str(out)]) == 0
    loose = pd.read_csv(out, keep_default_na=False)
    assert loose["kinds"].str.contains("crop").any() and len(loose) > len(table)
    kept = loose[loose["keep"]].set_index("group")["csl"]
    assert (kept.sort_index() <= loose.groupby("group")["csl"].min() + 1e-12).all()  # default: the lowest CSL
    with pytest.raises(SystemExit):
        main(["duplicates", str(demo_run), "--keep", "newest"])


def test_keep_by_file_reads_each_members_file(demo_run, tmp_path):
    report = find_duplicates(demo_run)
    samples = RunStore(demo_run).samples()
    group = [int(m) for m in report.groups.iloc[0]["members"]]
    paths = np.array([""] * len(samples), dtype=object)
    rng = np.random.default_rng(0)
    for size, member in enumerate(group):  # later members: larger pictures, noisier (larger files)
        file = tmp_path / f"{member}.png"
        Image.fromarray(rng.integers(0, 256, (8 + 8 * size, 8 + 8 * size), dtype=np.uint8)).save(file)
        paths[member] = str(file)
    with_files = samples.assign(path=paths)
    gid = int(report.groups.iloc[0]["group"])
    assert kept_members(report, with_files, "largest-file")[gid] == group[-1]
    assert kept_members(report, with_files, "highest-resolution")[gid] == group[-1]
    lowest = min(group, key=lambda m: (report.samples["csl"].to_numpy()[m], m))
    assert kept_members(report, with_files, "lowest-score")[gid] == lowest
    assert kept_members(report, samples, "largest-file")[gid] == lowest  # no files: the lowest CSL
