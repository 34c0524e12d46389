"""Evaluate page: where the truth is known (demo, injected noise or duplicates), how well each score and
the person's own decisions found the errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from csl_core.analysis.metrics import errors_found, review_outcome
from csl_core.analysis.scores import SCORES, suspicion
from csl_core.run.store import RunStore
from pages._common import effective_for, load_scores, require_scored_run, scores_for


@st.cache_data(max_entries=32, show_spinner=False)
def errors_found_curve(run_path: str, finished_epochs: int, truth_column: str, method: str, up_to: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(images reviewed, errors found)`` along the queue ranked by ``method``."""
    scores = load_scores(run_path, finished_epochs)
    return errors_found(scores[truth_column].to_numpy(bool), suspicion(scores, method), up_to=up_to)


@st.cache_data(max_entries=8, show_spinner="Evaluating every score...")
def evaluate_scores(run_path: str, finished_epochs: int, truth_column: str) -> tuple[pd.DataFrame, dict]:
    """AUROC, AUPR and precision at k for every available score, and a thinned ROC curve of each
    (kept in the folder of a completed run by its trainer: a page never writes it)."""
    store = RunStore(run_path, read_only=True)
    result = store.evaluation(truth_column, scores=load_scores(run_path, finished_epochs))
    table = pd.DataFrame(result["scores"]).rename(columns={
        "auroc": "AUROC", "aupr": "AUPR", "precision_at_k": "precision at k"})[
        ["score", "AUROC", "AUPR", "precision at k"]]
    grid = np.asarray(result["roc_fpr"])
    return table, {method: (grid, np.asarray(tpr)) for method, tpr in result["roc_tpr"].items()}


st.title("Evaluate")
store = require_scored_run()
scores = scores_for(store)
truths = {column: text for column, text in (("is_mislabeled", "injected mislabeled samples"),
                                            ("is_duplicate", "duplicates with conflicting labels"))
          if column in scores.columns and 0 < scores[column].astype(bool).sum() < len(scores)}
if not truths:
    st.info("This run has no ground truth. Train with injected noise (the demo has it, or set *Inject label "
            "noise* on the Run page) to see how well each score finds the flipped labels.")
    st.stop()

truth_column = st.radio("Errors to find", list(truths), format_func=truths.get, key="eval_truth", horizontal=True)
truth = scores[truth_column].to_numpy(bool)
k = int(truth.sum())
st.caption(f"{k:,} of {len(scores):,} samples are positives; *precision at k* is the share of them among the "
           f"top {k:,} of each score, what a person reviewing the top of the queue sees.")

table, curves = evaluate_scores(str(store.path), store.finished_epochs, truth_column)
methods = table["score"].tolist()
label_of = {m: SCORES[m].label if m in SCORES else m for m in methods}
headline = [m for m, score in SCORES.items() if score.headline and m in methods]
chosen = st.multiselect("Scores", methods, default=headline[:3],
                        format_func=label_of.get, key="eval_scores",
                        help="Each line: how many of the true errors a person has found after reviewing the "
                             "top k samples by that score.")
up_to = st.slider("Images reviewed, up to", min(k, len(scores)), len(scores), min(len(scores), 3 * k),
                  key="eval_up_to", help="The x-axis range: the first images of the review queue.")
left, right = st.columns([3, 2])
with left:
    figure = go.Figure()
    figure.add_scatter(x=[0, k, up_to], y=[0, k, k], mode="lines", name="ideal (every image an error)",
                       line=dict(dash="dash", color="grey"))
    figure.add_scatter(x=[0, up_to], y=[0, up_to * k / len(scores)], mode="lines", name="random order",
                       line=dict(dash="dot", color="lightgrey"))
    for method in chosen:
        reviewed, found = errors_found_curve(str(store.path), store.finished_epochs, truth_column, method, up_to)
        figure.add_scatter(x=reviewed, y=found, mode="lines", name=label_of[method],
                           line=dict(width=3 if method == "csl" else 1.8))
    figure.update_layout(title="Errors found vs images reviewed", height=420, margin=dict(t=50, b=40, l=10, r=10),
                         xaxis=dict(title="images reviewed (top of the queue)", tickformat=",d", rangemode="tozero"),
                         yaxis=dict(title="errors found", tickformat=",d", rangemode="tozero"),
                         legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(figure, key="eval_found")
with right:
    st.markdown(f"**Precision at {k:,}** (the true number of errors): the share of errors among the first "
                f"{k:,} images of each queue.")
    for method in chosen:
        precision = float(table.loc[table["score"] == method, "precision at k"].iloc[0])
        st.metric(label_of[method], f"{precision:.1%}", help=f"{round(precision * k):,} of the first {k:,} "
                                                                  "images are errors")
if st.toggle("Show ROC curves and every score's AUROC", key="eval_roc_toggle"):
    left, right = st.columns([3, 2])
    with left:
        figure = go.Figure()
        for method in chosen or methods:
            x, y = curves[method]
            value = table.loc[table["score"] == method, "AUROC"].iloc[0]
            figure.add_scatter(x=x, y=y, mode="lines", name=f"{label_of[method]} ({value:.3f})",
                               line=dict(width=3 if method == "csl" else 1.4))
        figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance")
        figure.update_layout(title="ROC curve of each chosen score", xaxis=dict(title="false-positive rate",
                             tickformat=".1f"), yaxis=dict(title="true-positive rate", tickformat=".1f"),
                             height=420, margin=dict(t=50, b=40, l=10, r=10), legend=dict(orientation="h", y=-0.2))
        st.plotly_chart(figure, key="eval_roc")
    with right:
        st.dataframe(table, hide_index=True, column_config={
            "AUROC": st.column_config.NumberColumn(format="%.4f"),
            "AUPR": st.column_config.NumberColumn(format="%.4f"),
            "precision at k": st.column_config.NumberColumn(format="%.3f")})

st.subheader("Your decisions")
effective = effective_for(store)
true_labels = scores["true_label"].to_numpy() if "true_label" in scores.columns else None
outcome = review_outcome(effective, scores["is_mislabeled"].to_numpy(bool) if "is_mislabeled" in scores
                         else truth, true_labels)
cells = st.columns(5)
cells[0].metric("True errors", f"{outcome['errors']:,}")
cells[1].metric("Caught", f"{outcome['caught']:,}",
                help="True errors you relabeled or dropped")
cells[2].metric("Fixed to the true label", f"{outcome.get('fixed', 0):,}")
cells[3].metric("False alarms", f"{outcome['false_alarms']:,}", help="Correct samples you relabeled or dropped")
cells[4].metric("Decisions", f"{outcome['decided']:,}")
if outcome["errors"]:
    st.progress(outcome["caught"] / outcome["errors"],
                text=f"{outcome['caught'] / outcome['errors']:.0%} of the injected mislabeled samples caught")
