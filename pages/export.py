"""Export page: what the decisions add up to, and the cleaned label file to train on."""
from __future__ import annotations

import json

import streamlit as st

from csl_core.run.export import class_summary, cleaned_labels, csv_bytes, export_run
from csl_core.run.interop import FIFTYONE_NAME, ISSUES_NAME, fiftyone_fields, label_issues
from csl_core.run.store import RunError
from pages._common import decision_log, effective_for, require_scored_run, scores_for
from pages._text import plain

st.title("Export")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
effective = effective_for(store)
has_files = "path" in scores.columns

st.subheader("Summary by class")
st.caption("By the label each sample was given; *after cleaning* counts relabeled samples where they land. "
           "Undecided samples keep their label.")
summary = class_summary(scores["label"].to_numpy(), effective, classes)
st.dataframe(summary, hide_index=True)

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
    except (OSError, ValueError, RunError) as e:
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
    st.dataframe(preview.sort_values("csl_rank").head(200), hide_index=True)
else:
    st.caption("No sample relabeled or dropped yet: the galleries and the review queue are where you decide.")

with st.expander("Decision log"):
    batches = decision_log(store).batches()
    st.dataframe(batches.iloc[::-1].head(200), hide_index=True)
