"""The Run page's Start: one training at a time from the form. While a run starts or trains, Start is that run's
Stop and the live run is drawn at the top; a second click (or a second tab) starts nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")

pytestmark = pytest.mark.usefixtures("no_magic")


def _order(at: AppTest) -> list[str]:
    """The main area's elements in page order (nested ones after their container), by kind and label."""
    return [f"{node.type}:{getattr(node, 'label', '') or getattr(node, 'value', '')}" for node in at.main]


def test_two_clicks_on_start_train_one_run(runs_dir, open_app):
    from pages._common import job_registry

    first, second = open_app(), open_app()                     # two tabs, both showing Start
    for tab, name in ((first, "demo-first"), (second, "demo-second")):
        tab.number_input(key="run_epochs").set_value(200)   # long enough to be training when the second click comes
        tab.text_input(key="run_name").input(name)
    first.button(key="run_start").click().run()
    try:
        assert not first.exception, [e.value for e in first.exception]
        # The same form now offers Stop for that run, never a second Start; the live run comes first.
        keys = [b.key for b in first.button]
        assert "run_start" not in keys and "run_form_stop" in keys
        assert first.button(key="run_form_stop").label == "Stop demo-first"
        order = _order(first)
        live = order.index("subheader:demo-first")
        form = order.index("expander:New run")
        assert live < form, order
        # A click that reached the server before the page redrew (here: the other tab's Start) starts nothing.
        second.button(key="run_start").click().run()
        assert any("demo-first is training" in e.value for e in second.error), [e.value for e in second.error]
        assert sorted(p.name for p in runs_dir.iterdir()) == ["demo-first"]
        assert len(job_registry().active()) == 1
        # Stop from the form ends it; Start comes back.
        first.button(key="run_form_stop").click().run()
        job_registry().get(runs_dir / "demo-first").wait(timeout=120)
        first.run()
        assert "run_start" in [b.key for b in first.button]
    finally:
        for job in job_registry().active():
            job.stop()
            job.wait(timeout=120)
