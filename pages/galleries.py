"""Galleries page: per class, the easiest and the hardest images side by side, with keep/relabel/drop."""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from pages._common import (
    decision_text,
    effective_for,
    pick_class,
    record,
    require_scored_run,
    scores_for,
    show_decision_feedback,
    show_thumbnail,
    undo,
)

SOURCE = "gallery"
COLUMNS = 3

st.title("Galleries")
st.caption("Lowest CSL (learned at once) beside highest CSL (fought the model all training). Mislabeled "
           "images gather on the right.")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
effective = effective_for(store)
show_decision_feedback()

filters = st.columns([2, 3, 1.4, 1.2, 1.2])
with filters[0]:
    label = pick_class(classes, "gal_class")
members = np.flatnonzero(scores["label"].to_numpy() == label)
csl = scores["csl"].to_numpy()
low, high = float(np.nanmin(csl[members])), float(np.nanmax(csl[members]))
with filters[1]:
    if high > low:
        span = st.slider("CSL range", low, high, (low, high), key=f"gal_range_{label}", format="%.2f",
                         help="Only images whose CSL falls in this range.")
    else:
        span = (low, high)
with filters[2]:
    undecided_only = st.checkbox("Undecided only", key="gal_undecided",
                                 help="Hide images you have already kept, relabeled or dropped.")
with filters[3]:
    per_side = st.selectbox("Per side", [9, 12, 18, 24], key="gal_per_side")
chosen = members[(csl[members] >= span[0]) & (csl[members] <= span[1])]
if undecided_only:
    chosen = chosen[effective["action"].to_numpy()[chosen] == "undecided"]
order = chosen[np.argsort(csl[chosen], kind="stable")]
pages = max(1, math.ceil(len(order) / per_side))
with filters[4]:
    page = st.number_input("Page", 1, pages, 1, key="gal_page", help=f"{pages} page(s) per side")
st.caption(f"{len(order):,} of {len(members):,} images of class **{classes[label]}** match.")
start = (page - 1) * per_side
easy = order[start: start + per_side]
hard = order[::-1][start: start + per_side]
hard = hard[~np.isin(hard, easy)]   # a small class meets in the middle: show each image once

suggested = scores["suggested_label"].to_numpy() if "suggested_label" in scores else None


def _relabel(index: int) -> None:
    choice = st.session_state.get(f"gal_relabel_{index}")
    if choice is not None:
        record(store, [index], "relabel", label=int(choice), source=SOURCE)
        st.session_state[f"gal_relabel_{index}"] = None


def card(index: int) -> None:
    sample = scores.loc[index]
    show_thumbnail(store, index)
    lines = [f"**#{int(sample['csl_rank']):,}** · CSL {sample['csl']:.2f}", f"given **{classes[label]}**"]
    relabel_options: list[int | None] = [None]
    if suggested is not None:
        hint = int(suggested[index])
        lines.append(f"suggested **{classes[hint]}** ({sample['suggested_confidence']:.0%})")
        relabel_options.append(hint)
    relabel_options += [c for c in range(len(classes)) if c not in relabel_options]
    state = effective.loc[index]
    if state["action"] != "undecided":
        lines.append(f":blue[{decision_text(state['action'], int(state['label']), classes)}]")
    st.markdown("  \n".join(lines))
    buttons = st.columns(2)
    buttons[0].button("Keep", key=f"gal_keep_{index}", on_click=record, args=(store, [index], "keep"),
                      kwargs={"source": SOURCE}, width="stretch")
    buttons[1].button("Drop", key=f"gal_drop_{index}", on_click=record, args=(store, [index], "drop"),
                      kwargs={"source": SOURCE}, width="stretch")
    st.selectbox("Relabel to", relabel_options, key=f"gal_relabel_{index}", on_change=_relabel, args=(index,),
                 format_func=lambda c: "relabel to..." if c is None else classes[c],
                 label_visibility="collapsed")


def grid(indices: np.ndarray, key: str) -> None:
    if len(indices) == 0:
        st.caption("No images on this page.")
        return
    for row_start in range(0, len(indices), COLUMNS):
        cells = st.columns(COLUMNS)
        for cell, index in zip(cells, indices[row_start: row_start + COLUMNS]):
            with cell.container(border=True, key=f"{key}_{int(index)}"):
                card(int(index))


left, right = st.columns(2, gap="large")
with left:
    st.subheader("Easiest: lowest CSL")
    grid(easy, "gal_easy")
with right:
    st.subheader("Hardest: highest CSL")
    grid(hard, "gal_hard")

image_error = st.session_state.get("image_errors", {}).pop(str(store.path), None)
if image_error:
    st.warning(f"Some images could not be read: {image_error}")
st.button("Undo last gallery action", key="gal_undo", on_click=undo, args=(store,), kwargs={"source": SOURCE},
          icon=":material/undo:")
