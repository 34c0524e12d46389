from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from csl_core.run.decisions import DecisionLog
from csl_core.run.duplicates import find_duplicates
from csl_core.run.export import export_run

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "duplicates.py")


@pytest.fixture(scope="module")
def run(demo_run, tmp_path_factory, copy_demo) -> Path:
    """The demo run, copied: the page writes decisions and the neighbour cache into it."""
    target = tmp_path_factory.mktemp("dup-page") / "demo"
    copy_demo(target)
    return target


@pytest.fixture(scope="module")
def conflict_groups(run) -> list[list[int]]:
    """Members of the conflicting groups at the page's default threshold, in page order."""
    groups = find_duplicates(run).groups
    return [list(map(int, m)) for m in groups[groups["label_conflict"]]["members"]]


def open_page(run: Path) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_path"] = str(run)
    at.run()
    assert not at.exception, at.exception
    return at


def exported(run: Path) -> pd.DataFrame:
    return pd.read_csv(export_run(run).csv_path, keep_default_na=False, dtype={"label": str, "original_label": str})


def test_page_shows_the_injected_pairs_as_conflicting_groups(run, conflict_groups):
    at = open_page(run)
    assert len(conflict_groups) >= 4
    assert any("label conflict" in m.value for m in at.markdown)
    assert at.button(key=f"dup_keep_{min(conflict_groups[0])}") is not None
    assert any("pairs grouped and flagged" in c.value for c in at.caption)


def test_group_actions_land_in_the_decision_log_and_the_export(run, conflict_groups):
    at = open_page(run)
    first, second, third = conflict_groups[:3]
    log = DecisionLog(run)
    labels = pd.read_csv(run / "samples.csv")["label"].to_numpy()

    # keep one, drop the rest
    keep = first[-1]
    at.selectbox(key=f"dup_keep_choice_{min(first)}").set_value(keep)
    at.button(key=f"dup_keep_{min(first)}").click().run()
    assert not at.exception, at.exception
    state = log.effective(len(labels), labels)
    assert state.at[keep, "action"] == "keep"
    assert all(state.at[m, "action"] == "drop" for m in first if m != keep)

    # give every member the label of one of them
    target = int(labels[second[-1]])
    at.selectbox(key=f"dup_relabel_to_{min(second)}").set_value(target)
    at.button(key=f"dup_relabel_{min(second)}").click().run()
    assert not at.exception, at.exception
    state = log.effective(len(labels), labels)
    assert (state.loc[second, "label"] == target).all()

    # not duplicates: logged, and the group leaves the (undecided-only) page
    at.button(key=f"dup_not_{min(third)}").click().run()
    assert not at.exception, at.exception
    history = log.history()
    marked = history[history["action"] == "not-duplicate"]["sample"].astype(int).tolist()
    assert sorted(marked) == sorted(third)
    assert f"dup_not_{min(third)}" not in [b.key for b in at.button]
    assert set(history["source"].dropna()) == {"duplicates"}

    table = exported(run)
    names = pd.read_csv(run / "samples.csv")["class_name"].astype(str).tolist()
    assert table.loc[keep, "action"] == "keep"
    assert all(table.loc[m, "action"] == "drop" for m in first if m != keep)
    assert all(table.loc[m, "label"] == str(target) for m in second)
    assert all(table.loc[m, "action"] == "undecided" and table.loc[m, "label"] == names[m] for m in third)


def test_undo_takes_back_the_whole_last_click(run, conflict_groups):
    at = open_page(run)
    group = conflict_groups[3]
    log = DecisionLog(run)
    before = len(log.batches())
    at.button(key=f"dup_keep_{min(group)}").click().run()
    assert len(log.batches()) == before + 1  # drop the rest and keep one: one click, one batch
    at.button(key="dup_undo").click().run()
    assert not at.exception, at.exception
    labels = pd.read_csv(run / "samples.csv")["label"].to_numpy()
    state = log.effective(len(labels), labels)
    assert (state.loc[group, "action"] == "undecided").all()
    assert log.batches()["undone"].sum() == 1


@pytest.fixture(scope="module")
def large_group_run(demo_run, tmp_path_factory, copy_demo) -> Path:
    """The demo run with its first 12 pictures made exact copies of one another (one group of 12)."""
    import numpy as np

    from csl_core.run.duplicates import FINGERPRINTS, NEIGHBOURS, image_fingerprints
    from csl_core.run.store import RunStore

    target = tmp_path_factory.mktemp("dup-page-large") / "demo"
    copy_demo(target)
    hashes, prints = image_fingerprints(RunStore(target))
    hashes[:12] = hashes[0]
    np.savez(target / FINGERPRINTS, hashes=hashes, thumbnails=prints)
    (target / NEIGHBOURS).unlink(missing_ok=True)
    return target


def test_a_large_group_is_a_warning_not_a_one_click_drop(large_group_run):
    groups = find_duplicates(large_group_run).groups
    large = groups[groups["size"] >= 12]
    assert len(large) == 1 and bool(large["label_conflict"].iloc[0])
    members = [int(m) for m in large["members"].iloc[0]]
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_path"] = str(large_group_run)
    at.run()
    assert not at.exception, at.exception
    anchor = min(members)
    keys = [b.key for b in at.button]
    assert f"dup_keep_{anchor}" not in keys  # no "keep one, drop the rest" for 12 images, 4 unseen
    assert any("12 images in one group" in w.value for w in at.warning)
    small = groups[groups["size"] <= 8]["members"].iloc[0]
    assert f"dup_keep_{min(int(m) for m in small)}" in keys  # a small group keeps its button
    # "give them all the label of ...": only after ticking the box that names the count
    log = DecisionLog(large_group_run)
    assert at.button(key=f"dup_relabel_{anchor}").disabled
    labels = pd.read_csv(large_group_run / "samples.csv")["label"].to_numpy()
    target = int(labels[members[-1]])
    at.selectbox(key=f"dup_relabel_to_{anchor}").set_value(target)
    assert at.checkbox(key=f"dup_relabel_confirm_{anchor}").label == "yes, relabel all 12 images"
    at.checkbox(key=f"dup_relabel_confirm_{anchor}").check().run()
    at.button(key=f"dup_relabel_{anchor}").click().run()
    assert not at.exception, at.exception
    state = log.effective(len(labels), labels)
    assert (state.loc[members, "label"] == target).all()
    assert (state.loc[members, "action"] != "drop").all()
