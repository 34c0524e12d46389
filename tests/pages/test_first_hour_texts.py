"""#31 (4, 5, 6): the small texts of the first hour. The Run page's "What next" names no count by a place it
is not in; Help's links between documents open in the same tab, the open run kept; Focused review shows which
class each digit key relabels to; the README says at which load its quick-loop figure holds, how big each
install path is, and what to do when the CPU index cannot be reached."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("no_magic")


@pytest.fixture()
def opened(demo_copy, open_app) -> AppTest:
    return open_app(run=str(demo_copy))


def test_what_next_names_the_count_without_placing_it(opened):
    shown = "\n".join(m.value for m in opened.markdown)
    assert "What next" in shown and "Review the top" in shown
    what_next = shown[shown.index("Review the top"):].split("\n")[0]
    assert not re.search(r"\b(above|below)\b", what_next), what_next


def test_help_links_open_in_this_tab_with_the_open_run(opened, runs_dir):
    opened.switch_page("pages/help.py").run()
    assert not opened.exception
    shown = "\n".join(m.value for m in opened.markdown)
    links = re.findall(r'<a href="(/documentation\?[^"]+)" target="_self">', shown)
    assert links and all("run=" in link and "demo" in link for link in links), links[:3]
    assert "](/documentation" not in shown   # no Markdown link left (those open a new tab)
    assert "&lt;" not in "\n".join(m.value for m in opened.code)


def test_focused_review_shows_which_class_each_digit_key_relabels_to(opened, monkeypatch):
    from csl_core.run.store import RunStore

    classes = ["Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt/top",
               "Trouser"]
    monkeypatch.setattr(RunStore, "classes", property(lambda self: classes))
    opened.switch_page("pages/focus.py").run()
    assert not opened.exception
    mapping = next(c.value for c in opened.caption if c.value.startswith("Digit keys"))
    for digit, name in enumerate(classes):
        assert f"**{digit}** {name}" in mapping.replace("\\", ""), (digit, mapping)


def test_the_readme_says_the_load_of_its_timing_and_the_size_of_each_install():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert re.search(r"quick loop.{0,80}under a minute.{0,40}idle cores", readme)
    assert re.search(r"at load \d+(\.\d+)? on two cores", readme)
    assert re.search(r"CPU wheel is about [0-9.]+ GB", readme) and re.search(r"[0-9.]+ GB installed", readme)
    assert "cannot be reached" in readme and "pip download torch" in readme and "--no-index --find-links" in readme
