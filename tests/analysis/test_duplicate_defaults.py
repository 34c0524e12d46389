"""The duplicate finder's defaults are the ones its benchmark table picks (docs/bench/duplicates.md, the
section "The table that picks the defaults"): the ratio of the sure tiers and the crop tier's limit, each
the largest whose false grouping stays within 0.5% of the samples on Fashion-MNIST and CIFAR-10N."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from csl_core.analysis.crops import CROP_MAX_DISTANCE
from csl_core.analysis.hashing import DEFAULT_RATIO
from csl_core.bench.duplicates import pick_threshold

DOC = Path(__file__).resolve().parents[2] / "docs" / "bench" / "duplicates.md"
SECTION = "### The table that picks the defaults"


def defaults_table() -> pd.DataFrame:
    """Every row of the Markdown tables in that section, by their headers."""
    text = DOC.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n### ", 1)[0]
    rows, header = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not re.fullmatch(r"-+", cells[0]):
            rows.append(dict(zip(header, cells)))
    table = pd.DataFrame(rows)
    table["threshold"] = table["threshold"].astype(float)
    table["false_share_not_known"] = table["false % (own duplicates left out)"].astype(float) / 100  # percent
    return table


def test_the_default_ratio_is_the_one_the_benchmark_table_picks():
    table = defaults_table()
    aligned = table[table["method"] == "aligned"]
    assert set(aligned["set"]) == {"fashion-mnist", "cifar10n"} and len(aligned) >= 8
    assert pick_threshold(aligned) == DEFAULT_RATIO


def test_the_default_crop_limit_is_the_one_the_benchmark_table_picks():
    table = defaults_table()
    crops = table[table["method"] == "crops"]
    assert set(crops["set"]) == {"fashion-mnist", "cifar10n"} and len(crops) >= 8
    assert pick_threshold(crops) == CROP_MAX_DISTANCE
    # ...and at it the crops of both sets are found at least 0.8 of the time
    at = crops[crops["threshold"] == CROP_MAX_DISTANCE]
    assert (at["crop"].astype(float) >= 0.8).all()
