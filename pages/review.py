"""Review queue: every sample ranked by a score, with thumbnails; decide on many rows at once."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.analysis.scores import SCORES, suspicion
from pages._common import (
    decision_text,
    effective_for,
    record,
    require_scored_run,
    scores_for,
    show_decision_feedback,
    thumb_url,
    undo,
)
from pages._filters import names_for, ranking, sample_filters
from pages._layout import column_px, select_px
from pages._text import isolated, middle

SOURCE = "review"
PATH_CHARS = 48   # a longer file path is shortened in the middle


st.title("Review queue")
st.caption("The most suspicious samples first. Select rows in the table (or take the top N) and decide for "
           "all of them at once; every action can be undone.")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
effective = effective_for(store)
show_decision_feedback()

filtered = sample_filters(store, scores, effective, "rev")
method = filtered.method
queue = filtered.queue
order = ranking(str(store.path), store.finished_epochs, method)
rank_of = np.empty(len(order), dtype=np.int64)
rank_of[order] = np.arange(1, len(order) + 1)
paging = st.columns([1.2, 1.2, 6])
with paging[0]:
    rows_per_page = st.selectbox("Rows", [25, 50, 100], key="rev_rows")
pages = max(1, math.ceil(len(queue) / rows_per_page))
with paging[1]:
    page = st.number_input("Page", 1, pages, 1, key="rev_page", help=f"{pages} page(s)")
shown = queue[(page - 1) * rows_per_page: page * rows_per_page]

values = suspicion(scores, method) if method != "csl" else scores["csl"].to_numpy()
suggested = scores["suggested_label"].to_numpy() if "suggested_label" in scores else None
names = np.asarray([isolated(c) for c in classes], dtype=object)   # no bidi control reorders a row
table = pd.DataFrame({
    "image": [thumb_url(store, i) for i in shown],
    "rank": rank_of[shown],
    "sample": [middle(n, PATH_CHARS) for n in names_for(store)[shown]],   # relative to the data root
    "given": names[scores["label"].to_numpy()[shown]],
    "suggested": names[suggested[shown]] if suggested is not None else "",
    "confidence": scores["suggested_confidence"].to_numpy()[shown] if suggested is not None else np.nan,
    "p(wrong)": scores["p_wrong"].to_numpy()[shown] if "p_wrong" in scores else np.nan,
    "score": values[shown],
    "CSL": scores["csl"].to_numpy()[shown],
    "decision": [decision_text(effective.at[i, "action"], int(effective.at[i, "label"]), classes) for i in shown],
})
if method == "csl":
    table = table.drop(columns="score")
st.caption(f"{len(queue):,} samples in the queue; page {page} of {pages}.")
class_names = [isolated(c) for c in classes]
event = st.dataframe(
    table, key="rev_table", hide_index=True, on_select="rerun", selection_mode="multi-row", row_height=56,
    height=min(38 + 56 * len(table), 38 + 56 * 12),   # a dozen rows in view, not six
    # Every header and value whole: the table scrolls sideways where it is wider than the page, the image and
    # rank staying in view.
    column_config={
        "image": st.column_config.ImageColumn("image", width="small", pinned=True),
        "rank": st.column_config.NumberColumn("rank", help=f"Rank by {SCORES[method].label}", pinned=True,
                                              width=column_px("rank", [f"{len(order):,}"])),
        "sample": st.column_config.TextColumn("sample", width=column_px("sample", table["sample"]),
                                              help="The file, relative to the data root (a long path is shortened "
                                                   "in the middle; the file name contains filter finds it whole)"),
        "given": st.column_config.TextColumn("given", width=column_px("given", class_names)),
        "suggested": st.column_config.TextColumn("suggested", width=column_px("suggested", class_names)),
        "decision": st.column_config.TextColumn("decision", width=column_px("decision", table["decision"])),
        "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="percent",
                                                      help="How sure the suggestion is: its share of the evidence "
                                                           "(mean softmax and neighbours' labels)"),
        "p(wrong)": st.column_config.NumberColumn("p(wrong)", format="%.2f",
                                                  help="The model's probability that the given label is wrong "
                                                       "(summed over the run: its count of wrong labels)"),
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

actions = st.container(horizontal=True, vertical_alignment="center")   # each button as wide as its label
none = len(targets) == 0
if suggested is not None:
    actions.button("Accept suggested labels", key="rev_accept", type="primary", disabled=none,
                   on_click=record, args=(store, targets.tolist(), "relabel"),
                   kwargs={"label": suggested[targets].tolist(), "source": SOURCE},
                   help="Relabel each sample to its suggested label (the likeliest other class; the "
                        "confidence column says how sure each suggestion is).")
relabel_to = actions.selectbox("Relabel to", list(range(len(classes))), key="rev_relabel_to",
                               width=select_px(f"relabel to {isolated(c, 40)}" for c in classes),
                               format_func=lambda c: f"relabel to {isolated(classes[c], 40)}",
                               label_visibility="collapsed")
actions.button("Relabel", key="rev_relabel", disabled=none, on_click=record,
               args=(store, targets.tolist(), "relabel"), kwargs={"label": int(relabel_to), "source": SOURCE})
actions.button("Drop", key="rev_drop", disabled=none, on_click=record, args=(store, targets.tolist(), "drop"),
               kwargs={"source": SOURCE})
actions.button("Keep", key="rev_keep", disabled=none, on_click=record, args=(store, targets.tolist(), "keep"),
               kwargs={"source": SOURCE})
actions.button("Undo last action", key="rev_undo", on_click=undo, args=(store,), icon=":material/undo:",
               help="Cancels the most recent action from any page; it stays in the log as undone.")
