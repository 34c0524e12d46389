"""Round two of the red-team corpus, pages: a crafted or damaged run folder is shown as damaged on every
page, never a traceback; viewing a run never writes to it; text from a run is never Markdown. Each test
names the issue-20 finding it holds."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from csl_core.run.decisions import DecisionLog
from csl_core.run.store import RunError, RunStore, run_problems
from tests.support import ROOT
from tests.support.files import tree_digest

APP = str(ROOT / "app.py")
PAGES = ["pages/run.py", "pages/trajectories.py", "pages/galleries.py", "pages/review.py", "pages/focus.py",
         "pages/pairs.py", "pages/duplicates.py", "pages/export.py", "pages/evaluate.py", "pages/memorization.py"]
pytestmark = pytest.mark.usefixtures("no_magic")


def every_page(at: AppTest) -> list[str]:
    """Visit every page; the error texts shown (an exception fails the test)."""
    shown = []
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown += [e.value for e in at.error]
    return shown


# ---------------------------------------------------------------- 8. crafted runs: the shared damage check

def _meta(path: Path, **changes) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _samples(path: Path, change) -> None:
    table = pd.read_csv(path / "samples.csv", keep_default_na=False, dtype={"sample_id": str, "class_name": str})
    change(table)
    table.to_csv(path / "samples.csv", index=False)


def _save(path: Path, name: str, array) -> None:
    np.save(path / name, array)


def _craft(kind: str, path: Path) -> str:
    """Damage the run ``path`` as ``kind`` says; returns a fragment of the problem the check must name."""
    n = RunStore(path).num_samples
    meta = json.loads((path / "meta.json").read_text())
    k = len(meta["classes"])
    if kind == "classes-shorter-than-labels":
        _meta(path, classes=meta["classes"][:3])
        return "'label' runs"
    if kind == "one-class":
        _meta(path, classes=meta["classes"][:1])
        return "at least two classes"
    if kind == "class-not-text":
        _meta(path, classes=[1, 2, *meta["classes"][2:]])
        return "at least two classes"
    if kind == "source-not-text":
        _meta(path, source={"evil": True})
        return "'source'"
    if kind == "image-shape-wrong":
        _meta(path, image_shape=[0, -1])
        return "'image_shape'"
    if kind == "samples-without-label":
        _samples(path, lambda t: t.pop("label"))
        return "lacks the column"
    if kind == "labels-not-numbers":
        _samples(path, lambda t: t.__setitem__("label", "cat"))
        return "not integers"
    if kind == "negative-label":
        _samples(path, lambda t: t.__setitem__("label", -1))
        return "'label' runs"
    if kind == "true-label-outside":
        _samples(path, lambda t: t.__setitem__("true_label", k + 5))
        return "'true_label' runs"
    if kind == "index-not-numbering":
        _samples(path, lambda t: t.__setitem__("index", np.arange(len(t))[::-1]))
        return "'index' column"
    if kind == "report-a-list":
        (path / "report.json").write_text("[1, 2, 3]")
        return "not a run report"
    if kind == "report-epochs-not-objects":
        (path / "report.json").write_text(json.dumps({"skipped": [], "epochs": [1, "x"]}))
        return "not a run report"
    if kind == "probabilities-other-classes":
        _save(path, "probabilities.npy", np.full((n, k + 2), 0.1, np.float32))
        return "probabilities.npy is damaged"
    if kind == "probabilities-integers":
        _save(path, "probabilities.npy", np.zeros((n, k), np.int64))
        return "probabilities.npy is damaged"
    if kind == "embeddings-one-dimensional":
        _save(path, "embeddings.npy", np.zeros(n, np.float32))
        return "embeddings.npy is damaged"
    if kind == "images-of-floats":
        _save(path, "images.npy", np.zeros((n, 4, 4, 1), np.float32))
        return "images.npy is damaged"
    if kind == "loss-of-integers":
        loss = np.load(path / "arrays" / "loss.npy")
        _save(path / "arrays", "loss.npy", np.zeros((loss.shape[0], loss.shape[1] * 2), np.int16))
        return "loss.npy is damaged"
    if kind in ("decisions-truncated", "decisions-not-sqlite"):
        log = DecisionLog(path)
        for i in range(300):
            log.record([i], "drop", note="x" * 200)
        with sqlite3.connect(path / "decisions.sqlite") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = (path / "decisions.sqlite").read_bytes()
        for leftover in path.glob("decisions.sqlite-*"):
            leftover.unlink()
        (path / "decisions.sqlite").write_bytes(data[: len(data) // 3] if kind == "decisions-truncated"
                                                else b"not a database at all" * 20)
        return "decisions.sqlite is damaged"
    if kind == "meta-huge":
        text = (path / "meta.json").read_text()
        with open(path / "meta.json", "w") as f:
            f.write(text[:-1] + " " * (17 << 20) + "}")            # valid JSON, 17 MiB
        return "more than any run's meta.json"
    raise AssertionError(kind)


CRAFTED = ["classes-shorter-than-labels", "one-class", "class-not-text", "source-not-text", "image-shape-wrong",
           "samples-without-label", "labels-not-numbers", "negative-label", "true-label-outside",
           "index-not-numbering", "report-a-list", "report-epochs-not-objects", "probabilities-other-classes",
           "probabilities-integers", "embeddings-one-dimensional", "images-of-floats", "loss-of-integers",
           "decisions-truncated", "decisions-not-sqlite", "meta-huge"]


@pytest.mark.parametrize("kind", CRAFTED)
def test_a_crafted_run_is_named_damaged_by_the_shared_check(kind, demo_copy):
    fragment = _craft(kind, demo_copy)
    problems = run_problems(demo_copy)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize("kind", ["classes-shorter-than-labels", "report-a-list", "decisions-truncated",
                                  "probabilities-other-classes"])
def test_every_page_shows_a_crafted_run_as_damaged(kind, demo_copy, open_app):
    _craft(kind, demo_copy)
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(demo_copy)).run()
    assert not at.exception
    shown = every_page(at)
    assert shown and all("damaged" in e for e in shown), shown


@pytest.mark.parametrize("value", [np.inf, -3.0])
def test_losses_no_ranking_can_use_are_damage_on_every_page(value, demo_copy, open_app):
    """inf crashed Galleries (a slider up to inf), NaN Evaluate; a negative loss inverts the ranking."""
    loss = np.load(demo_copy / "arrays" / "loss.npy")
    loss[5, 1] = value
    for leftover in demo_copy.glob("scores-*.parquet"):
        leftover.unlink()
    np.save(demo_copy / "arrays" / "loss.npy", loss)
    with pytest.raises(RunError, match="sample 5"):
        RunStore(demo_copy).scores()
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(demo_copy)).run()
    shown = every_page(at)
    assert any("damaged" in e and "sample 5" in e for e in shown), shown


def test_a_short_cached_scores_file_is_computed_again_not_shown(demo_copy):
    cache = next(demo_copy.glob("scores-*.parquet"))
    full = pd.read_parquet(cache)
    full.iloc[:10].to_parquet(cache)                               # a crafted short cache
    scores = RunStore(demo_copy).scores()
    assert len(scores) == len(full)
    np.testing.assert_allclose(scores["csl"], full["csl"])


# ---------------------------------------------------------------- 9. meta.json read with a size cap

def test_a_huge_meta_json_is_refused_unread(demo_copy, monkeypatch):
    _craft("meta-huge", demo_copy)
    read = []
    monkeypatch.setattr(json, "load", lambda *a, **k: read.append(1) or {})
    with pytest.raises(RunError, match="more than any run's meta.json"):
        RunStore(demo_copy)
    assert read == []


# ---------------------------------------------------------------- 5. viewing never writes

def test_the_address_opens_only_runs_under_the_runs_folder(runs_dir, demo_run, tmp_path, open_app, copy_demo):
    outside = tmp_path / "elsewhere" / "x"
    copy_demo(outside)
    before = tree_digest(outside)
    at = open_app(run=str(outside))
    assert at.session_state.get("run_path") != str(outside)
    assert any("not a run under the runs folder" in w.value for w in at.sidebar.warning)
    relative = open_app(run="../elsewhere/x")                     # relative to the server's working directory
    assert relative.session_state.get("run_path") != "../elsewhere/x"
    assert tree_digest(outside) == before


def test_a_read_only_run_folder_shows_every_page_and_takes_no_decision(demo_copy, monkeypatch, open_app):
    DecisionLog(demo_copy).record([1], "drop")
    with sqlite3.connect(demo_copy / "decisions.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in demo_copy.glob("decisions.sqlite-*"):
        leftover.unlink()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(demo_copy) in str(p))
                        else real_access(p, mode, **kw))            # as a folder of another user (tests run as root)
    before = tree_digest(demo_copy)
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(demo_copy)).run()
    assert any("not writable" in i.value for i in at.sidebar.info)
    assert every_page(at) == []
    log = DecisionLog(demo_copy)
    assert log.read_only and log.effective(RunStore(demo_copy).num_samples,
                                           RunStore(demo_copy).samples()["label"]).loc[1, "action"] == "drop"
    with pytest.raises(RunError, match="read-only"):
        log.record([2], "drop")
    assert tree_digest(demo_copy) == before


# ---------------------------------------------------------------- 13. text from a run is never Markdown

HOSTILE = ["![x](http://attacker.example/t.png)", "**bold** <b>x</b> :red[red] $x^2$", "\u202egnp.tac",
           "www.example.com", "a" * 300]


def test_names_are_plain_text_isolated_and_shortened():
    sys.path.insert(0, str(ROOT))
    from pages._text import isolated, plain

    for name in HOSTILE:
        shown = plain(name, 120)
        active = re.sub(r"\\.", "", shown)              # what Markdown still reads after the escapes
        assert "](" not in active and "**" not in active and "<b>" not in active and "$" not in active
        assert ":red[" not in active and ":red" not in shown and "www." not in shown and "\u202e" not in shown
        assert len(shown) < 200
    assert isolated("قطة (cat)").startswith("\u2068") and isolated("قطة (cat)").endswith("\u2069")
    assert plain("digits-1300") == "digits-1300"                  # ordinary names are left as they are


def test_hostile_class_names_render_as_text_on_every_page(runs_dir, tmp_path, open_app):
    from csl_core.run.interop import import_run
    from csl_core.run.writer import IMAGES  # noqa: F401  (the run gets images below)

    n = 40
    classes = [f"c{i}" for i in range(4)]    # import refuses an invisible character (#29): the names go in below
    labels = [classes[i % 4] for i in range(n)]
    pd.DataFrame({"sample_id": [f"{HOSTILE[i % 5][:40]}-{i}" for i in range(n)], "label": labels}).to_csv(
        tmp_path / "s.csv", index=False)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "l.npy", rng.random((n, 3)).astype(np.float32))
    probabilities = rng.dirichlet(np.ones(4), n).astype(np.float32)
    np.save(tmp_path / "p.npy", probabilities)
    np.save(tmp_path / "i.npy", rng.integers(0, 255, (n, 8, 8), dtype=np.uint8))
    import_run(runs_dir / "hostile", samples_file=tmp_path / "s.csv", losses_file=tmp_path / "l.npy",
               probabilities_file=tmp_path / "p.npy", images_file=tmp_path / "i.npy", classes=classes)
    meta = json.loads((runs_dir / "hostile" / "meta.json").read_text())    # a run made before, or crafted
    (runs_dir / "hostile" / "meta.json").write_text(json.dumps({**meta, "classes": HOSTILE[:4]}))
    at = open_app()
    assert at.session_state["run_path"] == str(runs_dir / "hostile")
    every_page(at)
    for page in PAGES:
        at.switch_page(page).run()
        texts = [m.value for m in [*at.markdown, *at.caption, *at.info, *at.error, *at.warning]]
        for text in texts:
            active = re.sub(r"\\.", "", text)
            assert "](http" not in active and "\u202e" not in text and ":red[" not in text, (page, text)
            assert "**bold**" not in active and "www.example" not in text, (page, text)
