"""Galleries page: per class, the easiest and the hardest images by the default ranking (fused where the run
has it, else CSL) side by side in a dense grid, with icon actions, click / shift-click selection and bulk
actions."""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from csl_core.analysis.scores import SCORES, default_score, suspicion
from pages._common import effective_for, pick_class, require_scored_run, scores_for, show_decision_feedback, undo
from pages._filters import sample_filters
from pages._grid import show_grid
from pages._text import plain

SOURCE = "gallery"

st.title("Galleries")
store = require_scored_run()
scores = scores_for(store)
method = default_score(scores)   # the ranking the review queue starts from
name = "CSL" if method == "csl" else f"{method} score"
st.caption(f"Lowest {name} (learned at once) beside highest {name} (fought the model all training): mislabeled "
           f"images gather on the right. Ranked by {SCORES[method].label}.")
classes = store.classes
effective = effective_for(store)

controls = st.columns([3, 3, 1.2, 1.2, 2])   # the class picker wide enough for a 20-character name
with controls[0]:
    label = pick_class(classes, "gal_class")
members = np.flatnonzero(scores["label"].to_numpy() == label)
values = suspicion(scores, method)   # higher = more suspicious
low, high = float(np.nanmin(values[members])), float(np.nanmax(values[members]))
with controls[1]:
    if high > low:
        span = st.slider(f"{name} range", low, high, (low, high), key=f"gal_range_{method}_{label}", format="%.2f",
                         help="Only images whose CSL falls in this range.")
    else:
        span = (low, high)
with controls[2]:
    per_side = st.selectbox("Per side", [12, 24, 48, 96], key="gal_per_side")
with controls[4]:
    size = st.slider("Thumbnail size", 64, 256, 80, step=16, key="gal_size", format="%d px",
                     help="As many columns as fit at this size.")
with st.expander("Filters: file name, decision, score threshold, suggested label", icon=":material/filter_list:"):
    filtered = sample_filters(store, scores, effective, "gal", decisions=(), rank=False, by_given=False, flat=True)
keep = np.zeros(len(scores), dtype=bool)
keep[filtered.queue] = True
chosen = members[(values[members] >= span[0]) & (values[members] <= span[1]) & keep[members]]
order = chosen[np.argsort(values[chosen], kind="stable")]
pages = max(1, math.ceil(len(order) / per_side))
with controls[3]:
    page = st.number_input("Page", 1, pages, 1, key="gal_page", help=f"{pages} page(s) per side")
st.caption(f"{len(order):,} of {len(members):,} images of class **{plain(classes[label], 80)}** match.")
start = (page - 1) * per_side
easy = order[start: start + per_side]
hard = order[::-1][start: start + per_side]
hard = hard[~np.isin(hard, easy)]   # a small class meets in the middle: show each image once


@st.fragment
def galleries() -> None:
    """Only this part reruns when a card is decided."""
    show_decision_feedback()
    current = effective_for(store)
    left, right = st.columns(2, gap="medium")
    with left:
        st.markdown(f"##### Easiest: lowest {name}")
        show_grid(store, scores, current, easy, key="gal_easy", size=size, source=SOURCE)
    with right:
        st.markdown(f"##### Hardest: highest {name}")
        show_grid(store, scores, current, hard, key="gal_hard", size=size, source=SOURCE)
    image_error = st.session_state.get("image_errors", {}).pop(str(store.path), None)
    if image_error:
        st.warning(f"Some images could not be read: {plain(image_error, 400)}")
    st.button("Undo last gallery action", key="gal_undo", on_click=undo, args=(store,), kwargs={"source": SOURCE},
              icon=":material/undo:")


galleries()
