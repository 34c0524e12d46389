"""Trajectories page: the paper's peacock figure, per-sample loss over training, linked to the images."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from csl_core.analysis.scores import SCORES
from pages._common import (
    class_mean_loss,
    decision_text,
    effective_for,
    loss_rows,
    pick_class,
    require_scored_run,
    scores_for,
    show_thumbnail,
)
from pages._text import in_plot, isolated, plain

SCATTER_POINTS = 4000   # a scatter of 1M points would only draw ink; a seeded sample shows the shape

st.title("Trajectories")
st.caption("Every sample's loss, epoch by epoch. Easy samples are learned at once and stay low; mislabeled "
           "and memorised ones stay high for long. CSL is the area under each line.")
store = require_scored_run()
scores = scores_for(store)
classes = store.classes
finished = store.finished_epochs

controls = st.columns([2, 2, 3])
with controls[0]:
    label = pick_class(classes, "traj_class")
with controls[1]:
    k = st.slider("Samples per side (k)", 1, 25, 5, key="traj_k",
                  help="The k lowest-CSL (easiest) and k highest-CSL (hardest) samples of the class.")

members = np.flatnonzero(scores["label"].to_numpy() == label)
order = members[np.argsort(scores["csl"].to_numpy()[members], kind="stable")]
easy, hard = order[:k], order[::-1][:k]
shown = np.concatenate([easy, hard[~np.isin(hard, easy)]])
curves = loss_rows(str(store.path), finished, tuple(int(i) for i in shown))
epochs = np.arange(1, finished + 1)

figure = go.Figure()
for row, index in enumerate(shown):
    is_hard = index in hard
    sample = scores.loc[index]
    figure.add_scatter(
        x=epochs, y=curves[row], mode="lines+markers", marker=dict(size=4),
        line=dict(color="#d62728" if is_hard else "#1f77b4", width=1.6),
        name=f"{'hard' if is_hard else 'easy'} · {in_plot(sample['sample_id'])}",
        legendgroup="hard" if is_hard else "easy",
        showlegend=False, customdata=np.full((finished, 3), [int(index), sample["csl"], int(sample["csl_rank"])],
                                             dtype=object),
        hovertemplate=f"<b>{in_plot(sample['sample_id'])}</b><br>CSL %{{customdata[1]:.3f}} (rank %{{customdata[2]}})"
                      "<br>epoch %{x}: loss %{y:.3f}<extra></extra>")
average = class_mean_loss(str(store.path), finished, int(label))
figure.add_scatter(x=epochs, y=average, mode="lines", name=f"class {in_plot(classes[label])} average",
                   line=dict(color="black", dash="dash", width=2.5),
                   hovertemplate="class average<br>epoch %{x}: loss %{y:.3f}<extra></extra>")
for name, color in (("hardest k (highest CSL)", "#d62728"), ("easiest k (lowest CSL)", "#1f77b4")):
    figure.add_scatter(x=[None], y=[None], mode="lines", line=dict(color=color), name=name)
figure.update_layout(title=f"Per-epoch loss, class {in_plot(classes[label])}: {k} easiest and {k} hardest by CSL",
                     xaxis_title="epoch", yaxis_title="training loss", height=440, hovermode="closest",
                     margin=dict(t=50, b=40, l=10, r=10), legend=dict(orientation="h", y=-0.18))
event = st.plotly_chart(figure, key="traj_chart", on_select="rerun", selection_mode="points")

picked = None
points = event.selection.get("points", []) if event else []
if points and points[0].get("customdata"):
    picked = int(points[0]["customdata"][0])
options = [int(i) for i in shown]
if picked in options and st.session_state.get("traj_last_pick") != picked:
    st.session_state["traj_last_pick"] = picked
    st.session_state["traj_sample"] = picked
if st.session_state.get("traj_sample") not in options:
    st.session_state["traj_sample"] = int(hard[0])

st.subheader("Sample")
sample_index = st.selectbox(
    "Inspect a sample (or click a line)", options, key="traj_sample",
    format_func=lambda i: f"{'hard' if i in hard else 'easy'} · CSL rank {scores.at[i, 'csl_rank']} · "
                          f"{isolated(scores.at[i, 'sample_id'], 60)}")
sample = scores.loc[sample_index]
state = effective_for(store).loc[sample_index]
image_column, facts = st.columns([1, 3])
with image_column:
    show_thumbnail(store, sample_index, 192, width=192)
with facts:
    lines = [f"**{plain(sample['sample_id'])}**",
             f"Given label: **{plain(classes[int(sample['label'])])}**"]
    if "suggested_label" in sample:
        lines.append(f"Suggested label: **{plain(classes[int(sample['suggested_label'])])}** "
                     f"({sample['suggested_confidence']:.0%})")
    if "true_label" in sample and sample.get("is_mislabeled"):
        lines.append(f"Injected error: the true label is **{plain(classes[int(sample['true_label'])])}**")
    lines.append(f"Decision: {plain(decision_text(state['action'], int(state['label']), classes))}")
    st.markdown("  \n".join(lines))
    wanted = dict.fromkeys(["csl", "csl_rank", *SCORES])   # every score of the table this run has
    table = sample[[c for c in wanted if c in sample.index]].to_frame("value").T
    st.dataframe(table, hide_index=True)

st.subheader("CSL against other signals, whole set")
rng = np.random.default_rng(0)
sampled = (np.sort(rng.choice(len(scores), SCATTER_POINTS, replace=False)) if len(scores) > SCATTER_POINTS
           else np.arange(len(scores)))
subset = scores.iloc[sampled]
if len(sampled) < len(scores):
    st.caption(f"A seeded random {len(sampled):,} of {len(scores):,} samples.")
truth = subset["is_mislabeled"].to_numpy(bool) if "is_mislabeled" in subset else None
left, right = st.columns(2)
for column, (y, title) in zip((left, right), (("learning_time", "learning time (epoch)"),
                                              ("final_loss", "final-epoch loss"))):
    if y not in subset:
        continue
    figure = go.Figure()
    groups = [("samples", np.ones(len(subset), bool), "#1f77b4")]
    if truth is not None:
        groups = [("clean", ~truth, "#1f77b4"), ("injected mislabeled", truth, "#d62728")]
    for name, mask, color in groups:
        part = subset[mask]
        figure.add_scattergl(x=part["csl"], y=part[y], mode="markers", name=name,
                             marker=dict(size=5, color=color, opacity=0.6),
                             text=[in_plot(v) for v in part["sample_id"]],
                             hovertemplate="%{text}<br>CSL %{x:.3f}<br>" + title + " %{y:.3f}<extra></extra>")
    figure.update_layout(title=f"CSL vs {title}", xaxis_title="CSL", yaxis_title=title, height=380,
                         margin=dict(t=50, b=40, l=10, r=10), legend=dict(orientation="h", y=-0.2))
    with column:
        st.plotly_chart(figure, key=f"traj_scatter_{y}")
