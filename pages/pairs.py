"""Class pairs: which classes the suspects are confused with. Given label x suggested label over the
most suspicious samples; a cell lists its samples (image, file, given and suggested label with the suggestion's
confidence), the person unticks any, and one click relabels the ticked ones; they stay listed, as decided."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.analysis.scores import SCORES, available_scores, default_score
from csl_core.run.decisions import UNDECIDED
from pages._common import (
    decision_log,
    decision_text,
    effective_for,
    record,
    require_scored_run,
    scores_for,
    show_decision_feedback,
    thumb_url,
    undo,
)
from pages._filters import names_for, ranking, short_score_name
from pages._grid import show_grid
from pages._layout import column_px
from pages._text import isolated, middle, plain

SOURCE = "class-pairs"
GALLERY_LIMIT = 120
TABLE_LIMIT = 500
PATH_CHARS = 48   # a longer file path is shortened in the middle
HEADER_CHARS = 24
ss = st.session_state


def suspects(order: np.ndarray, given: np.ndarray, suggested: np.ndarray, undecided: np.ndarray | None,
             top: int) -> np.ndarray:
    """The first ``top`` samples of ``order`` (after the undecided filter) whose suggestion differs from
    their given label."""
    queue = order if undecided is None else order[undecided[order]]
    queue = queue[:top]
    return queue[suggested[queue] != given[queue]]


def pair_matrix(members: np.ndarray, given: np.ndarray, suggested: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Counts of ``members`` by given label (rows) and suggested label (columns), every class on both axes."""
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (given[members], suggested[members]), 1)
    return pd.DataFrame(counts, index=pd.Index(classes, name="given"), columns=classes)


def member_table(store, scores: pd.DataFrame, effective: pd.DataFrame, in_cell: np.ndarray) -> pd.DataFrame:
    """One row per member of a cell: whether the relabel button takes it (ticked while undecided), its
    image, file, given and suggested label with the suggestion's confidence, and the decision on it."""
    classes = store.classes
    names = np.asarray([isolated(c) for c in classes], dtype=object)   # no bidi control reorders a row
    actions = effective["action"].to_numpy()[in_cell]
    confidence = (scores["suggested_confidence"].to_numpy(np.float64)[in_cell]
                  if "suggested_confidence" in scores else np.full(len(in_cell), np.nan))
    return pd.DataFrame({
        "relabel": actions == UNDECIDED,
        "image": [thumb_url(store, i) for i in in_cell],
        "file": [middle(n, PATH_CHARS) for n in names_for(store)[in_cell]],
        "given": names[scores["label"].to_numpy(np.int64)[in_cell]],
        "suggested": names[scores["suggested_label"].to_numpy(np.int64)[in_cell]],
        "confidence": confidence,
        "decision": [decision_text(a, int(effective.at[i, "label"]), classes) for a, i in zip(actions, in_cell)],
        "index": in_cell,
    })


def ticked(edited: pd.DataFrame, effective: pd.DataFrame) -> list[int]:
    """The members the person left ticked that are still undecided (a decided one is never decided twice)."""
    rows = edited["index"].to_numpy(np.int64)[edited["relabel"].to_numpy(bool)]
    return [int(i) for i in rows if effective.at[int(i), "action"] == UNDECIDED]


st.title("Class pairs")
st.caption("Rows: the label a sample has; columns: the label the model suggests. Each cell counts the suspects "
           "of one confusion; pick a cell to look at its samples, untick any, and relabel the rest at once.")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
if "suggested_label" not in scores:
    st.info("This run has no suggested labels (its mean probabilities were not kept), so there is no matrix.")
    st.stop()
drawn_at = decision_log(store).revision()   # the ticks below are drawn from it (read before it)
effective = effective_for(store)
show_decision_feedback()

given = scores["label"].to_numpy(np.int64)
suggested = scores["suggested_label"].to_numpy(np.int64)
controls = st.columns([3, 2, 2])
with controls[0]:
    names = available_scores(scores)
    method = st.selectbox("Suspects by", names, index=names.index(default_score(scores)), key="pair_score",
                          format_func=short_score_name)   # the default ranking, as on every review page
with controls[1]:
    top = st.number_input("Most suspicious", 1, len(scores), min(len(scores), max(50, len(scores) // 20)),
                          step=50, key="pair_top", help="How many samples from the top of the ranking count as "
                                                        "suspects (those whose suggestion differs are counted).")
with controls[2]:
    undecided_only = st.checkbox("Undecided only", value=True, key="pair_undecided")
undecided = (effective["action"] == UNDECIDED).to_numpy(bool) if undecided_only else None
order = ranking(str(store.path), store.finished_epochs, method)
rank_of = np.empty(len(order), dtype=np.int64)
rank_of[order] = np.arange(len(order))
members = suspects(order, given, suggested, undecided, int(top))
matrix = pair_matrix(members, given, suggested, classes)

cells = [(int(g), int(s)) for g, s in zip(*np.nonzero(matrix.to_numpy())) if g != s]
cells.sort(key=lambda c: -matrix.iat[c])
options = [f"{g}>{s}" for g, s in cells]


# Column headers: a class name whole up to HEADER_CHARS characters, a longer one shortened in the middle (whole on
# hover), so that more than one column of 40-character names fits; the row labels are whole.
headers = [middle(c, HEADER_CHARS) for c in classes]
if len(set(headers)) < len(headers):
    headers = [isolated(c) for c in classes]


def _cell_clicked() -> None:
    selection = ss.get("pair_table")
    chosen = selection.selection.cells if selection is not None else []
    if chosen:
        row, column = chosen[0]
        g, s = int(row), headers.index(str(column))
        if f"{g}>{s}" in options:
            ss["pair_cell"] = f"{g}>{s}"


# The matrix across the page (it scrolls sideways where the classes do not fit, the given labels staying in view),
# every header whole or shortened in the middle (whole on hover), never cut; the chosen cell's samples below it.
st.caption(f"{len(members):,} suspects among the top {int(top):,} by {SCORES[method].label}. Click a cell.")
shown = matrix.astype(str).replace("0", "")
shown.index = [isolated(c) for c in classes]
shown.index.name = "given"
shown.columns = headers
config = {"_index": st.column_config.TextColumn("given", pinned=True, width=column_px("given", shown.index))}
for header, name in zip(headers, classes):
    config[header] = st.column_config.TextColumn(header, width=column_px(header, shown[header]), help=isolated(name))
st.dataframe(shown, key="pair_table", on_select=_cell_clicked, selection_mode="single-cell", column_config=config)
with st.container():
    pinned = ss.get("pair_pinned") or {}
    context = [method, int(top), bool(undecided_only)]
    if pinned.get("context") != context:
        pinned = {}
    if pinned.get("cell") and pinned["cell"] not in options:
        options.append(pinned["cell"])   # the cell just decided stays open, its members shown as decided
    if not options:
        st.info("No suspect has a suggested label different from its given one here.")
        st.stop()
    if ss.get("pair_cell") not in options:
        ss["pair_cell"] = options[0]
    st.selectbox("Cell", options, key="pair_cell",
                 format_func=lambda o: f"given {isolated(classes[int(o.split('>')[0])], 40)} → suggested "
                                       f"{isolated(classes[int(o.split('>')[1])], 40)} "
                                       f"({matrix.iat[tuple(map(int, o.split('>')))]})")
    g, s = map(int, ss["pair_cell"].split(">"))
    in_cell = members[(given[members] == g) & (suggested[members] == s)]
    if pinned.get("cell") == ss["pair_cell"]:
        in_cell = np.union1d(np.asarray(pinned["members"], dtype=np.int64), in_cell)
        in_cell = in_cell[np.argsort(rank_of[in_cell], kind="stable")]   # most suspicious first
    ss["pair_pinned"] = {"context": context, "cell": ss["pair_cell"], "members": in_cell.tolist()}
    table = member_table(store, scores, effective, in_cell)
    undecided_members = in_cell[(effective["action"].to_numpy()[in_cell] == UNDECIDED)]
    st.markdown(f"**{len(in_cell)}** sample(s) labeled **{plain(classes[g], 80)}** that the model sees as "
                f"**{plain(classes[s], 80)}** ({len(undecided_members)} undecided). Untick any you do not want "
                "relabeled.")
    shown = table.iloc[:TABLE_LIMIT]
    edited = st.data_editor(
        shown, key=f"pair_members_{g}_{s}", hide_index=True, disabled=[c for c in shown.columns if c != "relabel"],
        row_height=56, height=min(38 + 56 * len(shown), 38 + 56 * 10),
        column_config={
            "relabel": st.column_config.CheckboxColumn("relabel", help="Ticked: relabeled by the button below",
                                                       pinned=True),
            "image": st.column_config.ImageColumn("image", width="small", pinned=True),
            "file": st.column_config.TextColumn("file", width=column_px("file", shown["file"]),
                                                help="Relative to the data root; a long path is shortened in the "
                                                     "middle"),
            **{name: st.column_config.TextColumn(name, width=column_px(name, shown[name].map(isolated)))
               for name in ("given", "suggested", "decision")},
            "confidence": st.column_config.ProgressColumn(
                "confidence", min_value=0.0, max_value=1.0, format="percent",
                help="How sure the suggestion is: the share of the evidence (the model's predictions over training "
                     "and the labels of the image's nearest neighbours) for the suggested class"),
            "index": None})
    chosen = ticked(edited, effective)
    if len(table) > TABLE_LIMIT:
        st.caption(f"The first {TABLE_LIMIT} of {len(table)} are listed; the button applies to the ticked ones "
                   "listed here.")
    buttons = st.container(horizontal=True)
    buttons.button(f"Relabel the {len(chosen)} ticked to {plain(classes[s], 40)}", key="pair_accept",
                   type="primary",
                   on_click=record, args=(store, chosen, "relabel"), disabled=not chosen,
                   kwargs={"label": s, "source": SOURCE, "computed_at": drawn_at}, icon=":material/done_all:",
                   help="One decision for the ticked samples still undecided; Undo takes it back at once.")
    buttons.button("Undo", key="pair_undo", on_click=undo, args=(store,), kwargs={"source": SOURCE},
                   icon=":material/undo:", help="Cancels the last action of this page.")

    if len(in_cell) > GALLERY_LIMIT:
        st.caption(f"The first {GALLERY_LIMIT} of {len(in_cell)} are shown.")
    show_grid(store, scores, effective, in_cell[:GALLERY_LIMIT], key="pair_grid", size=80, source=SOURCE)
