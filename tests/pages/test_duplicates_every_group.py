"""The Duplicates page shows every group by default (a filter narrows to label conflicts), names each
group's kinds (exact / near / possible crop), takes the crop limit and which copy to keep as settings, and
shows each member's file on one line, shortened in the middle, the whole of it on hover."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from csl_core.run.duplicates import find_duplicates

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "duplicates.py")


@pytest.fixture(scope="module")
def run(copy_demo, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("dup-every-group") / "demo"
    copy_demo(target)
    return target


def open_page(run: Path) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_path"] = str(run)
    at.run()
    assert not at.exception, at.exception
    return at


def matching(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if "group(s) match" in c.value)
    return int(re.match(r"([\d,]+) group", caption).group(1).replace(",", ""))


def test_every_group_by_default_and_conflicts_on_request(run):
    at = open_page(run)
    crop_limit = at.slider(key="dup_crop_limit").value
    groups = find_duplicates(run, crop_limit=crop_limit).groups
    assert not at.checkbox(key="dup_conflicts").value
    assert matching(at) == len(groups)
    at.checkbox(key="dup_conflicts").check().run()
    assert not at.exception, at.exception
    assert matching(at) == int(groups["label_conflict"].sum())


def test_the_crop_limit_and_the_kinds_shown(run):
    at = open_page(run)
    at.slider(key="dup_crop_limit").set_value(0.01).run()  # loose: digits of one hand join as possible crops
    assert not at.exception, at.exception
    loose = find_duplicates(run, crop_limit=0.01).groups
    assert loose["kinds"].str.contains("crop").any()
    assert matching(at) == len(loose)
    assert any("possible crop" in m.value for m in at.markdown)
    assert any("exact copies" in m.value for m in at.markdown)  # the demo's injected copies
    at.slider(key="dup_crop_limit").set_value(0.0).run()
    assert not any("possible crop" in m.value for m in at.markdown)
    assert matching(at) == len(find_duplicates(run, crop_limit=0.0).groups)


def test_which_copy_is_offered_first_follows_the_keep_setting(run):
    at = open_page(run)
    groups = find_duplicates(run, crop_limit=at.slider(key="dup_crop_limit").value).groups
    first_shown = [int(m) for m in groups.iloc[0]["members"]]
    at.selectbox(key="dup_keep_policy").set_value("first").run()
    assert not at.exception, at.exception
    box = at.selectbox(key=f"dup_keep_choice_{min(first_shown)}_first")
    assert box.value == min(first_shown)
    assert any("kept by first" in m.value for m in at.markdown)


def test_each_file_is_one_line_shortened_in_the_middle_with_the_whole_on_hover(run):
    from pages._text import middle

    long = "/data/scraped/a-rather-long-folder-name/and-another-one/IMG_20240101_000123.jpg"
    short = middle(long, 22)
    assert len(short) == 22 and short.startswith("/data/") and short.endswith("000123.jpg") and "…" in short
    assert middle("a.png", 22) == "a.png"
    at = open_page(run)
    hovered = [m for m in at.markdown if m.help]
    # one line as wide as its cell, the start shortened with "…" where narrower, the whole in its title (#31)
    assert hovered and all("\n" not in m.value and f'title="{m.help.replace(chr(92), "")}"' in m.value
                           for m in hovered)
