"""The audit in Focused review: the fixed list of samples a person answers so that the run's count of wrong
labels rests on their answers (:func:`csl_core.analysis.audit.audit_sample`), the same list on every visit."""
from __future__ import annotations

import numpy as np
import streamlit as st

from csl_core.analysis.audit import AUDIT_SIZE, MIN_ANSWERS, audit_sample, audit_seed
from csl_core.analysis.noise_rate import run_p_wrong
from pages._common import load_scores

AUDIT_CHOICE = "Audit (answer ~40-100 questions to make the count honest)"
REVIEW_CHOICE = "Most suspicious first"


@st.cache_data(max_entries=8, show_spinner=False)
def audit_queue(run_path: str, finished_epochs: int, run_name: str) -> np.ndarray:
    """The samples the audit asks about, in order: :func:`~csl_core.analysis.audit.audit_sample` over the model's
    ``p_wrong`` (stratified, every prefix spread over it), :data:`~csl_core.analysis.audit.AUDIT_SIZE` of them.
    Samples decided before are in it as well (shown decided): the list never depends on the decisions."""
    scores = load_scores(run_path, finished_epochs)
    return audit_sample(run_p_wrong(scores), AUDIT_SIZE, seed=audit_seed(run_name))


def audit_help() -> str:
    return (f"The audit asks about {AUDIT_SIZE} images the tool picks across the model's p(wrong), the sure and "
            "the doubtful alike. Answer by the same keys: **K** the label is right, **A** or a digit relabel, **D** "
            f"wrong (drop). From {MIN_ANSWERS} answers on, the count of wrong labels rests on your answers (every "
            "decision counts; the audit's are spread so that they speak for the whole run): 40 make it usable, "
            "100 honest. Samples you decided before are shown decided.")
