"""The Run page's live view of the open run: the progress line and figures, the loss and accuracy curves and
the CSL histogram (each a fragment the page redraws while the run trains)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from csl_core.engine.jobs import Job
from pages._common import open_store, scores_for
from pages._sidebar import format_seconds, job_state_text


def live_progress(job: Job | None, active: bool) -> None:
    """The progress line and the run's figures (a fragment redrawn every second while the run is live)."""
    current = job.status() if job is not None else None
    if current is not None and current.active != active:
        st.rerun()   # the job ended (or started): redraw the page without the timer
    run = open_store()
    if run is None:
        if current is not None and current.active:
            st.progress(0.0, text="preparing the data...")
        return
    meta = run.meta
    report = run.report()
    epochs = pd.DataFrame(report.get("epochs", []))
    fraction = current.fraction if current is not None else meta["finished_epochs"] / max(1, meta["epochs"])
    text = job_state_text(current) if current is not None else (
        f"{'finished' if meta.get('completed') else 'stopped'} · epoch {meta['finished_epochs']}/{meta['epochs']}")
    st.progress(fraction, text=text)
    seconds = epochs["seconds"].to_numpy() if "seconds" in epochs else np.array([])
    cells = st.columns(5)
    cells[0].metric("Epoch", f"{meta['finished_epochs']}/{meta['epochs']}")
    cells[1].metric("s / epoch", f"{np.median(seconds):.1f}" if len(seconds) else "-")
    cells[2].metric("ETA", format_seconds(current.eta_seconds) if current is not None and current.active else "-")
    cells[3].metric("Samples", f"{meta['num_samples']:,}")
    test_accuracy = report.get("test_accuracy")
    cells[4].metric("Test accuracy", f"{test_accuracy:.3f}" if test_accuracy is not None else "-")
    skipped = report.get("skipped", [])
    if skipped:
        with st.expander(f"{len(skipped)} input(s) skipped"):
            st.dataframe(pd.DataFrame(skipped), hide_index=True)


def live_charts() -> None:
    """Loss and accuracy per epoch and the CSL histogram (a fragment redrawn as often as an epoch can finish)."""
    run = open_store()
    if run is None:
        return
    meta = run.meta
    epochs = pd.DataFrame(run.report().get("epochs", []))
    if epochs.empty:
        return
    curves, histogram = st.columns(2)
    with curves:
        figure = go.Figure()
        x = epochs["epoch"] + 1
        figure.add_scatter(x=x, y=epochs["loss"], name="mean training loss", mode="lines+markers")
        figure.add_scatter(x=x, y=epochs["accuracy"], name="training accuracy", mode="lines+markers", yaxis="y2")
        figure.update_layout(title="Loss and accuracy", height=320, margin=dict(t=40, b=30, l=10, r=10),
                             xaxis=dict(title="epoch", tickformat=",d"), yaxis=dict(title="loss"),
                             yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1],
                                         tickmode="linear", dtick=0.25, tickformat=".0%", showgrid=False),
                             legend=dict(orientation="h", y=-0.25))
        st.plotly_chart(figure, key="run_curves")
    with histogram:
        scores = scores_for(run)
        csl = scores["csl"].to_numpy()
        edges = np.histogram_bin_edges(csl[np.isfinite(csl)], bins=40)
        figure = go.Figure()
        groups = [("all samples", np.ones(len(csl), bool))]
        if "is_mislabeled" in scores:
            truth = scores["is_mislabeled"].to_numpy(bool)
            groups = [("clean", ~truth), ("injected mislabeled", truth)]
        for name, mask in groups:
            counts, _ = np.histogram(csl[mask], bins=edges)
            figure.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, name=name, width=np.diff(edges))
        figure.update_layout(title=f"CSL after {meta['finished_epochs']} epoch(s)", barmode="stack", height=320,
                             margin=dict(t=40, b=30, l=10, r=10), xaxis_title="cumulative sample loss",
                             yaxis=dict(title="samples", type="log", dtick=1), legend=dict(orientation="h", y=-0.25))
        st.plotly_chart(figure, key="run_histogram")
