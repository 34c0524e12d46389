"""Review queue: every sample ranked by a score, with thumbnails; decide on many rows at once."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.analysis.scores import SCORES, available_scores, default_score, suspicion
from pages._common import (
    decision_text,
    effective_for,
    pick_class,
    record,
    require_scored_run,
    scores_for,
    show_decision_feedback,
    thumb_url,
    undo,
)

SOURCE = "review"


@st.cache_data(max_entries=16, show_spinner=False)
def ranking(run_path: str, finished_epochs: int, method: str) -> np.ndarray:
    """Sample indices, most suspicious first by ``method`` (ties by sample order)."""
    from pages._common import load_scores

    values = suspicion(load_scores(run_path, finished_epochs), method)
    return np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")


st.title("Review queue")
st.caption("The most suspicious samples first. Select rows in the table (or take the top N) and decide for "
           "all of them at once; every action can be undone.")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
effective = effective_for(store)
show_decision_feedback()

available = available_scores(scores)
filters = st.columns([3, 2, 1.4, 1.2, 1.2])
with filters[0]:
    method = st.selectbox("Rank by", available, key="rev_score", format_func=lambda m: SCORES[m].label,
                          index=available.index(default_score(scores)),
                          help="Every score is oriented so that the top of the queue is the most suspicious.")
with filters[1]:
    label = pick_class(classes, "rev_class", all_option=True)
with filters[2]:
    undecided_only = st.checkbox("Undecided only", key="rev_undecided", value=True)
with filters[3]:
    rows_per_page = st.selectbox("Rows", [25, 50, 100], key="rev_rows")

order = ranking(str(store.path), store.finished_epochs, method)
rank_of = np.empty(len(order), dtype=np.int64)
rank_of[order] = np.arange(1, len(order) + 1)
queue = order
if label is not None:
    queue = queue[scores["label"].to_numpy()[queue] == label]
if undecided_only:
    undecided = (effective["action"] == "undecided").to_numpy(bool)  # vectorised: no Python string per sample
    queue = queue[undecided[queue]]
pages = max(1, math.ceil(len(queue) / rows_per_page))
with filters[4]:
    page = st.number_input("Page", 1, pages, 1, key="rev_page", help=f"{pages} page(s)")
shown = queue[(page - 1) * rows_per_page: page * rows_per_page]

values = suspicion(scores, method) if method != "csl" else scores["csl"].to_numpy()
suggested = scores["suggested_label"].to_numpy() if "suggested_label" in scores else None
names = np.asarray(classes, dtype=object)
table = pd.DataFrame({
    "image": [thumb_url(store, i) for i in shown],
    "rank": rank_of[shown],
    "sample": scores["sample_id"].iloc[shown].to_numpy(),  # only the rows shown (1.28M ids cost 0.1 s)
    "given": names[scores["label"].to_numpy()[shown]],
    "suggested": names[suggested[shown]] if suggested is not None else "",
    "confidence": scores["suggested_confidence"].to_numpy()[shown] if suggested is not None else np.nan,
    "score": values[shown],
    "CSL": scores["csl"].to_numpy()[shown],
    "decision": [decision_text(effective.at[i, "action"], int(effective.at[i, "label"]), classes) for i in shown],
})
if method == "csl":
    table = table.drop(columns="score")
st.caption(f"{len(queue):,} samples in the queue; page {page} of {pages}.")
event = st.dataframe(
    table, key="rev_table", hide_index=True, on_select="rerun", selection_mode="multi-row", row_height=56,
    column_config={
        "image": st.column_config.ImageColumn("image", width="small"),
        "rank": st.column_config.NumberColumn("rank", help=f"Rank by {SCORES[method].label}"),
        "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="percent",
                                                      help="Mean predicted probability of the suggested label"),
        "score": st.column_config.NumberColumn(method, format="%.3f"),
        "CSL": st.column_config.NumberColumn("CSL", format="%.3f"),
    })
selected = shown[list(event.selection.rows)] if event and event.selection.rows else shown[:0]

st.subheader("Apply to")
scope_columns = st.columns([3, 1.5, 5])
with scope_columns[0]:
    scope = st.radio("Apply to", ["selected rows", "top N of the queue"], key="rev_scope", horizontal=True,
                     label_visibility="collapsed")
with scope_columns[1]:
    top_n = st.number_input("N", 1, max(1, len(queue)), min(10, max(1, len(queue))), key="rev_top_n",
                            label_visibility="collapsed", disabled=scope != "top N of the queue",
                            help="How many samples from the top of the queue (with the filters above)")
targets = selected if scope == "selected rows" else queue[:top_n]
with scope_columns[2]:
    st.markdown(f"**{len(targets)}** sample(s)")

actions = st.columns([2, 1.6, 1.2, 1, 1, 1.6])
none = len(targets) == 0
if suggested is not None:
    actions[0].button("Accept suggested labels", key="rev_accept", type="primary", disabled=none,
                      on_click=record, args=(store, targets.tolist(), "relabel"),
                      kwargs={"label": suggested[targets].tolist(), "source": SOURCE},
                      help="Relabel each sample to its suggested label (a sample whose suggestion is its own "
                           "label counts as kept).")
relabel_to = actions[1].selectbox("Relabel to", list(range(len(classes))), key="rev_relabel_to",
                                  format_func=lambda c: f"relabel to {classes[c]}", label_visibility="collapsed")
actions[2].button("Relabel", key="rev_relabel", disabled=none, on_click=record,
                  args=(store, targets.tolist(), "relabel"), kwargs={"label": int(relabel_to), "source": SOURCE})
actions[3].button("Drop", key="rev_drop", disabled=none, on_click=record, args=(store, targets.tolist(), "drop"),
                  kwargs={"source": SOURCE})
actions[4].button("Keep", key="rev_keep", disabled=none, on_click=record, args=(store, targets.tolist(), "keep"),
                  kwargs={"source": SOURCE})
actions[5].button("Undo last action", key="rev_undo", on_click=undo, args=(store,), icon=":material/undo:",
                  help="Cancels the most recent action from any page; it stays in the log as undone.")
