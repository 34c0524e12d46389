"""The Help page: the documentation installed beside the dashboard, readable offline, from the sidebar."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")

pytestmark = pytest.mark.usefixtures("no_magic")


def test_the_sidebar_menu_leads_to_the_documentation(runs_dir, open_app):
    at = open_app()
    assert not at.exception
    at.switch_page("pages/help.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = "\n".join(m.value for m in at.markdown)
    readme = (ROOT / "README.md").read_text()
    assert "## Quick start" in shown and "python -m pytest -q" in shown
    assert len(at.get("image")) >= 1                 # the README's screenshot, from disk, served by the app
    assert 'href="/documentation?doc=docs%2Fcli.md' in shown    # a link to another document opens it here
    assert "](docs/" not in shown                    # no relative link left that would not resolve
    assert readme.count("](docs/") > 0
    at.selectbox(key="help_doc").set_value("docs/cli.md").run()
    assert "csl-clean app --runs /data/runs" in "\n".join(m.value for m in at.markdown) + "\n".join(
        c.value for c in at.code)


def test_every_document_the_readme_names_is_on_the_help_page():
    from pages.help import DOCUMENTS, document_key

    named = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", (ROOT / "README.md").read_text()))
    assert named and all(document_key(target, "README.md") in DOCUMENTS for target in named), named
    assert all((ROOT / key).is_file() for key in DOCUMENTS)
