"""Export page: what the decisions add up to, and the cleaned label file to train on."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.analysis.cleaning import CLEAN_AT, suggested_cleaning
from csl_core.analysis.noise_rate import CLEANING_SOURCE
from csl_core.errors import CSLError
from csl_core.run.decisions import Decision
from csl_core.run.export import class_summary, cleaned_labels, csv_bytes, export_run
from csl_core.run.interop import FIFTYONE_NAME, ISSUES_NAME, fiftyone_fields, label_issues
from pages._common import (
    decision_log,
    effective_for,
    require_scored_run,
    run_count,
    scores_for,
    show_decision_feedback,
    tab_id,
    undo,
)
from pages._filters import names_for
from pages._text import plain, text_table

SOURCE = CLEANING_SOURCE   # the batch's source: the tool's plan, never counted as a person's answers
LISTED = 300

st.title("Export")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
drawn_at = decision_log(store).revision()   # what the plan below is computed from (read before it)
effective = effective_for(store)
has_files = "path" in scores.columns
show_decision_feedback()


def _accept_cleaning(relabel_rows: list[int], labels: list[int], drop_rows: list[int], computed_at: int) -> None:
    """Record the suggested cleaning as one batch (relabels and drops together: one Undo takes it back), unless
    its samples were decided since the plan was computed (another tab, an undo): then it is drawn again."""
    decisions = [Decision(relabel_rows, "relabel", labels)] if relabel_rows else []
    decisions += [Decision(drop_rows, "drop")] if drop_rows else []
    if not decisions:
        return
    try:
        decision_log(store).record_batch(decisions, source=SOURCE, tab=tab_id(), computed_at=computed_at)
    except CSLError as e:   # read-only, or the decisions changed: the plan is computed again
        st.session_state["decision_error"] = str(e)
        return
    st.session_state["last_decision"] = (f"suggested cleaning · {len(relabel_rows)} relabeled, "
                                         f"{len(drop_rows)} dropped")


def suggested_cleaning_section() -> None:
    """What the suggested cleaning would do (counts per action and per class, the samples), then one click
    that records it as one undoable batch. Samples the person has decided on are left as they are."""
    st.subheader("Suggested cleaning")
    if "suggested_label" not in scores.columns:
        st.caption("This run has no suggested labels (its mean probabilities were not kept).")
        return
    plan = suggested_cleaning(scores, effective["action"].to_numpy(object),
                              sources=effective["source"].to_numpy(object))
    counts = plan.counts()
    count = run_count(store)
    if count is not None:
        st.caption(f"The run's count: **{count.text()}**; the plan acts on the same probabilities.")
    st.caption(f"It acts only where its action is at least {CLEAN_AT:.0%} likely to be right: **relabel** where the "
               "label is that likely wrong *and* the suggestion its true class, **drop** where the label is that "
               "likely wrong but no class is that likely right; every other sample is left for your review. Of its "
               f"{plan.budget:,} actions, about **{plan.expected_right:,.0f}** are expected to be right. Your own "
               "decisions are never changed. Nothing is applied until you press the button; Undo takes it back.")
    cells = st.columns(3)
    cells[0].metric("Relabel", f"{counts['relabel']:,}")
    cells[1].metric("Drop", f"{counts['drop']:,}")
    cells[2].metric("Keep", f"{counts['keep']:,}")
    st.dataframe(text_table(plan.by_class(scores["label"].to_numpy(), classes)), hide_index=True, key="clean_by_class")
    acted = np.flatnonzero(plan.action != "keep")
    with st.expander(f"The {len(acted):,} samples it acts on"):
        names = np.asarray(classes, dtype=object)
        listed = acted[:LISTED]
        st.dataframe(text_table(pd.DataFrame({
            "file": names_for(store)[listed].astype(str),
            "given": names[scores["label"].to_numpy(np.int64)[listed]],
            "suggested": names[scores["suggested_label"].to_numpy(np.int64)[listed]],
            "confidence": scores["suggested_confidence"].to_numpy(np.float64)[listed],
            "p(wrong)": scores["p_wrong"].to_numpy(np.float64)[listed] if "p_wrong" in scores else np.nan,
            "action": plan.action[listed]})), hide_index=True, key="clean_samples",
            column_config={"confidence": st.column_config.ProgressColumn(
                "confidence", min_value=0.0, max_value=1.0, format="percent",
                help="How sure the suggestion is (its share of the class evidence)"),
                "p(wrong)": st.column_config.NumberColumn(
                    "p(wrong)", format="%.2f", help="The model's probability that the given label is wrong")})
        if len(acted) > LISTED:
            st.caption(f"The first {LISTED} (in sample order) of {len(acted):,}.")
    relabel_rows = plan.rows("relabel")
    buttons = st.container(horizontal=True)
    buttons.button(f"Accept the suggested cleaning: relabel {counts['relabel']:,}, drop {counts['drop']:,}",
                   key="clean_accept", type="primary", disabled=not len(acted), on_click=_accept_cleaning,
                   args=(relabel_rows.tolist(), plan.label[relabel_rows].tolist(), plan.rows("drop").tolist(),
                         drawn_at),
                   icon=":material/cleaning_services:")
    buttons.button("Undo", key="clean_undo", on_click=undo, args=(store,), kwargs={"source": SOURCE},
                   icon=":material/undo:", help="Takes back the last suggested cleaning applied in this tab.")


suggested_cleaning_section()

st.subheader("Summary by class")
st.caption("By the label each sample was given; *after cleaning* counts relabeled samples where they land. "
           "Undecided samples keep their label.")
summary = class_summary(scores["label"].to_numpy(), effective, classes)
st.dataframe(text_table(summary), hide_index=True)

st.subheader("Cleaned label file")
options = st.columns(2)
include_dropped = options[0].checkbox(
    "Keep dropped samples as rows", key="exp_include_dropped", value=True,
    help="On: every sample is a row and `action` says drop. Off: dropped samples are left out of the file.")
tree = options[1].checkbox(
    "Also build a cleaned ImageFolder tree (links)", key="exp_tree", value=False, disabled=not has_files,
    help="export/imagefolder/<label>/<file> as symbolic links to your files (copies where links fail). "
         "Only for runs trained on image files." if has_files else "This run's images are not files on disk.")


def _write() -> None:
    if store.read_only:
        st.session_state["exp_message"] = ("error", "This run is shown read-only, so nothing is written into its "
                                                    "folder; download the CSV instead")
        return
    try:
        result = export_run(store.path, include_dropped=include_dropped, imagefolder=tree, scores=scores)
    except (OSError, CSLError) as e:
        st.session_state["exp_message"] = ("error", str(e))
        return
    text = f"Wrote {result.rows:,} rows to {result.csv_path}"
    if result.tree_path is not None:
        made = ", ".join(f"{count:,} {kind}s" for kind, count in result.links.items() if count)
        text += f" and the tree {result.tree_path} ({made or 'empty'})"
    st.session_state["exp_message"] = ("success", text)


def _csv() -> bytes:
    return csv_bytes(cleaned_labels(scores, effective, classes, include_dropped=include_dropped))


buttons = st.container(horizontal=True)   # each button as wide as its label
buttons.button("Write to the run folder", key="exp_write", type="primary", on_click=_write,
               icon=":material/save:")
buttons.download_button("Download CSV", data=_csv, file_name=f"{store.name}-cleaned_labels.csv",
                        mime="text/csv", key="exp_download", icon=":material/download:")
message = st.session_state.pop("exp_message", None)
if message:
    getattr(st, message[0])(plain(message[1]))

st.subheader("For other tools")
st.caption("`label_issues.csv`: cleanlab's columns (`given_label`, `predicted_label`, `label_score`: low = suspicious, "
           "`is_label_issue`), one row per sample. `fiftyone_fields.json`: the same fields keyed by file path, for "
           "`dataset.set_values(field, values, key_field=\"filepath\")`. docs/api.md shows how each tool loads them.")


def _issues():
    return label_issues(scores, effective, classes)


tools = st.container(horizontal=True)   # each button as wide as its label
tools.download_button("label_issues.csv", data=lambda: csv_bytes(_issues()), file_name=f"{store.name}-{ISSUES_NAME}",
                      mime="text/csv", key="exp_cleanlab", icon=":material/download:")
tools.download_button("FiftyOne fields", data=lambda: json.dumps(fiftyone_fields(_issues())).encode(),
                      file_name=f"{store.name}-{FIFTYONE_NAME}", mime="application/json", key="exp_fiftyone",
                      icon=":material/download:")

changed = effective.index[effective["action"].isin(["relabel", "drop"])]
st.subheader(f"Changes ({len(changed):,})")
if len(changed):
    preview = cleaned_labels(scores.loc[changed], effective.loc[changed], classes)
    st.dataframe(text_table(preview.sort_values("csl_rank").head(200)), hide_index=True)
else:
    st.caption("No sample relabeled or dropped yet: the galleries and the review queue are where you decide.")

with st.expander("Decision log"):
    batches = decision_log(store).batches()
    st.dataframe(text_table(batches.iloc[::-1].head(200)), hide_index=True)
