"""Memorisation page: CSL against the stability estimate of memorisation (Feldman & Zhang), where the run
has one (``python -m csl_core memorization``), and each class's most and least memorised images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from csl_core.run.memorization import MemorizationFolder
from csl_core.run.store import RunError
from pages._common import pick_class, require_scored_run, scores_for, show_thumbnail
from pages._text import in_plot, isolated, plain

SCATTER_POINTS = 4000
LISTED = 200            # the most memorised samples offered in the sample picker
MEASURES = {"correct": ("memorization", "correctness (Feldman & Zhang)"),
            "p_given": ("memorization_p_given", "softmax probability of the given label")}


@st.cache_data(max_entries=8, show_spinner=False)
def load_memorization(run_path: str, stamp: float) -> tuple[pd.DataFrame | None, dict | None, str | None]:
    """The estimate and comparison kept in the run folder (``stamp``: their modification time)."""
    folder = MemorizationFolder(run_path)
    try:
        return folder.estimate(), folder.comparison(), None
    except RunError as e:
        return None, None, str(e)


def _stamp(folder: MemorizationFolder) -> float:
    files = [folder.estimate_file, folder.comparison_file]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """One row per score; cosine and Spearman over all samples and the most memorised ones."""
    table = pd.DataFrame(rows)
    subsets = list(dict.fromkeys(table["samples"]))
    wide = table.pivot(index="score", columns="samples", values=["cosine", "spearman"])
    wide = wide.reindex(list(dict.fromkeys(table["score"])))[[(m, s) for m in ("cosine", "spearman") for s in subsets]]
    wide.columns = [f"{m}, {s}" for m, s in wide.columns]
    return wide.reset_index()


st.title("Memorisation")
st.caption("Feldman's memorisation: how much a sample's own presence in the training set raises the model's "
           "accuracy on it, estimated from many trainings on random halves of the data. The paper's claim is that "
           "CSL from one ordinary run tracks it.")
store = require_scored_run()
folder = MemorizationFolder(store)
estimate, comparison, problem = load_memorization(str(store.path), _stamp(folder))
if problem:
    st.error(plain(problem))
    st.stop()
if estimate is None or comparison is None:
    st.info(f"Run **{plain(store.name)}** has no memorisation estimate yet. It takes many trainings (200 on the demo: "
            f"minutes); from a terminal:\n\n`python -m csl_core memorization --out {store.path} --models 200`")
    st.stop()

scores = scores_for(store)
classes = store.classes
measure = st.radio("Accuracy measured as", list(MEASURES), key="mem_measure", horizontal=True,
                   format_func=lambda m: MEASURES[m][1],
                   help="Correctness is Feldman & Zhang's definition; the softmax probability of the given label "
                        "is a smoother variant with less estimator noise.")
column = MEASURES[measure][0]
memorization = estimate[column].to_numpy(np.float64)
rows = comparison["table"] if measure == "correct" else comparison["table_p_given"]
table = comparison_table(rows)
csl_row = table[table["score"] == "csl"].iloc[0]
cost = comparison["cost"]

cells = st.columns(4)
cells[0].metric("Subset trainings", f"{comparison['models']:,}",
                help=f"each on {comparison['fraction']:.0%} of the {comparison['samples']:,} samples")
cells[1].metric("CSL cosine, all samples", f"{csl_row['cosine, all']:.3f}", help="the paper's level: 0.87 on CIFAR-100")
cells[2].metric("CSL Spearman, all samples", f"{csl_row['spearman, all']:.3f}")
if cost.get("work_ratio"):
    cells[3].metric("Cost of the estimate", f"{cost['work_ratio']:.0f}x",
                    help=f"{cost['model_seconds_total']:.0f} s of subset training against "
                         f"{cost['reference_training_seconds']:.1f} s for the one ordinary run")

rng = np.random.default_rng(0)
shown = (np.sort(rng.choice(len(scores), SCATTER_POINTS, replace=False)) if len(scores) > SCATTER_POINTS
         else np.arange(len(scores)))
groups = [("samples", np.ones(len(scores), bool), "#1f77b4")]
if "is_mislabeled" in scores:
    mislabeled = scores["is_mislabeled"].to_numpy(bool)
    duplicate = scores["is_duplicate"].to_numpy(bool) if "is_duplicate" in scores else np.zeros(len(scores), bool)
    groups = [("clean", ~mislabeled & ~duplicate, "#1f77b4"), ("injected mislabeled", mislabeled, "#d62728"),
              ("injected duplicate pair", duplicate & ~mislabeled, "#ff7f0e")]
csl = scores["csl"].to_numpy(np.float64)
figure = go.Figure()
for name, mask, color in groups:
    part = shown[mask[shown]]
    figure.add_scattergl(x=memorization[part], y=csl[part], mode="markers", name=name,
                         marker=dict(size=6, color=color, opacity=0.6), customdata=part,
                         text=[in_plot(v) for v in scores["sample_id"].to_numpy()[part]],
                         hovertemplate="%{text}<br>memorisation %{x:.3f}<br>CSL %{y:.3f}<extra></extra>")
figure.update_layout(title="CSL against the stability estimate (click a point for its image)",
                     xaxis_title="memorisation estimate", yaxis_title="CSL", height=440,
                     margin=dict(t=50, b=40, l=10, r=10), legend=dict(orientation="h", y=-0.18))
left, right = st.columns([3, 2], gap="medium")
with left:
    event = st.plotly_chart(figure, key="mem_scatter", on_select="rerun", selection_mode="points")
    if len(shown) < len(scores):
        st.caption(f"A seeded random {len(shown):,} of {len(scores):,} samples.")

known = np.flatnonzero(np.isfinite(memorization))
ranked = known[np.lexsort((-csl[known], -memorization[known]))]
options = [int(i) for i in ranked[:LISTED]]
points = event.selection.get("points", []) if event else []
picked = int(points[0]["customdata"]) if points and points[0].get("customdata") is not None else None
if picked is not None and st.session_state.get("mem_last_pick") != picked:
    st.session_state["mem_last_pick"] = picked
    st.session_state["mem_sample"] = picked
if picked is not None and picked not in options:
    options.append(picked)
if st.session_state.get("mem_sample") not in options:
    st.session_state["mem_sample"] = options[0]

with right:
    sample_index = st.selectbox("Sample (the most memorised first, or click a point)", options, key="mem_sample",
                                format_func=lambda i: f"memorisation {memorization[i]:.2f} · CSL rank "
                                                      f"{scores.at[i, 'csl_rank']} · "
                                                      f"{isolated(scores.at[i, 'sample_id'], 60)}")
    sample = scores.loc[sample_index]
    show_thumbnail(store, sample_index, 192, width=192)
    lines = [f"**{plain(sample['sample_id'])}** · given label **{plain(classes[int(sample['label'])])}**",
             f"Memorisation {memorization[sample_index]:.3f}. Right in {estimate.at[sample_index, 'in_accuracy']:.0%} "
             f"of the {int(estimate.at[sample_index, 'models_in'])} models that trained on it, in "
             f"{estimate.at[sample_index, 'out_accuracy']:.0%} of the {int(estimate.at[sample_index, 'models_out'])} "
             "that did not",
             f"CSL {sample['csl']:.3f} (rank {int(sample['csl_rank']):,} of {len(scores):,})"]
    if "is_mislabeled" in sample and sample["is_mislabeled"]:
        lines.append(f"Injected error: the true label is **{plain(classes[int(sample['true_label'])])}**")
    if "is_duplicate" in sample and sample["is_duplicate"]:
        lines.append(f"Injected duplicate of sample {int(sample['duplicate_of'])}")
    st.markdown("  \n".join(lines))

st.subheader("Every score against the estimate")
st.dataframe(table, hide_index=True, column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c != "score"})
st.caption("Each score oriented so that higher means more memorised; cosine as in the paper's Table 1 (a score "
           "with negative values shifted to start at 0), top x% = the samples with the highest estimate.")

st.subheader("Most and least memorised, per class")
st.caption("The most memorised images are the atypical, mislabeled and conflicting ones, learned only when "
           "they are themselves trained on; the least memorised are typical images and duplicates, learned "
           "from the others.")
controls = st.columns([2, 1])
with controls[0]:
    label = pick_class(classes, "mem_class")
with controls[1]:
    per_side = st.selectbox("Per side", [6, 12, 24], key="mem_per_side")
members = known[scores["label"].to_numpy()[known] == label]
# ties (many samples are never memorised: 0) go to CSL, so the least memorised are the most typical too
most = members[np.lexsort((-csl[members], -memorization[members]))][:per_side]
least = members[np.lexsort((csl[members], memorization[members]))][:per_side]
least = least[~np.isin(least, most)]


def gallery(indices: np.ndarray, key: str) -> None:
    if len(indices) == 0:
        st.caption("No images.")
        return
    columns = 3
    for start in range(0, len(indices), columns):
        cells = st.columns(columns)
        for cell, index in zip(cells, indices[start: start + columns]):
            with cell.container(border=True, key=f"{key}_{int(index)}"):
                show_thumbnail(store, int(index))
                flags = []
                if "is_mislabeled" in scores and scores.at[index, "is_mislabeled"]:
                    flags.append(":red[mislabeled]")
                if "is_duplicate" in scores and scores.at[index, "is_duplicate"]:
                    flags.append(":orange[duplicate]")
                st.markdown(f"mem **{memorization[index]:.2f}** · CSL #{int(scores.at[index, 'csl_rank']):,}"
                            + ("  \n" + " ".join(flags) if flags else ""))


left, right = st.columns(2, gap="large")
with left:
    st.markdown(f"**Most memorised** ({plain(classes[label], 60)})")
    gallery(most, "mem_most")
with right:
    st.markdown(f"**Least memorised** ({plain(classes[label], 60)})")
    gallery(least, "mem_least")

st.subheader("The estimator's own noise")
st.caption("CSL against the estimate from the first k models, and the Spearman correlation between the "
           "estimates of two disjoint halves of them: where it is far below 1, the estimate itself is noisy and "
           "no score can agree with it much better.")
st.dataframe(pd.DataFrame(comparison["by_models"]), hide_index=True, column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in ("cosine", "spearman", "split_half_spearman")})
