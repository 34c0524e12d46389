"""The dashboard's own safety: localhost only and no statistics; the newest healthy run opens, a damaged one is
shown damaged."""
from __future__ import annotations

import os
import sys

from tests.support import ROOT


def test_the_dashboard_listens_on_localhost_only_and_sends_no_statistics():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    # the config's comment names the section that says how to serve it to others on purpose: it must exist
    import re

    pointer = re.search(r'see "([^"]+)" in (\S+?)\.?\n', (ROOT / ".streamlit" / "config.toml").read_text())
    assert pointer, "config.toml says where serving to others is explained"
    section, document = pointer.groups()
    text = (ROOT / document).read_text()
    assert f"## {section}\n" in text
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    assert "--server.address" in body and "127.0.0.1" in body


def test_the_dashboard_opens_the_newest_healthy_run_and_shows_a_damaged_one_as_damaged(tmp_path, monkeypatch, make_run,
                                                                                       open_app):
    from streamlit import config as st_config

    runs = tmp_path / "runs"
    good = make_run(runs / "good")
    bad = make_run(runs / "bad")
    text = (bad.path / "meta.json").read_text()
    (bad.path / "meta.json").write_text(text[:40])                   # truncated: the newest run
    os.utime(good.path / "meta.json", (1, 1))
    monkeypatch.setenv("CSL_RUNS_DIR", str(runs))
    sys.path.insert(0, str(ROOT))
    from pages._common import job_registry

    job_registry.clear()          # jobs of earlier tests in this process would be listed first
    st_config.set_option("runner.magicEnabled", False)
    try:
        at = open_app()
        assert not at.exception
        assert at.session_state["run_path"] == str(good.path)
        picker = at.sidebar.selectbox[0]
        assert picker.format_func(str(bad.path)).endswith("(damaged)")
        at.switch_page("pages/galleries.py").run()
        assert not at.exception
        picker = at.sidebar.selectbox[0]
        picker.set_value(str(bad.path)).run()
        assert not at.exception
        assert any("damaged" in e.value and "meta.json" in e.value for e in at.error)
    finally:
        st_config.set_option("runner.magicEnabled", True)
