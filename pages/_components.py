"""The dashboard's two custom components (Streamlit components v2: inline JS and CSS, no iframe, no
build step), registered once per process: the focused review view and the thumbnail grid."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent / "components"


def _read(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


focus_view = st.components.v2.component("csl_focus_view", js=_read("focus.js"), css=_read("focus.css"))
thumbnail_grid = st.components.v2.component("csl_thumbnail_grid", js=_read("grid.js"), css=_read("grid.css"))
