"""Filters over the whole run, shared by the review pages: score, threshold, file name, given / suggested
label and decision. Each returns the matching sample indices, most suspicious first."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.analysis.scores import SCORES, available_scores, default_score, suspicion
from csl_core.run.decisions import EFFECTIVE_ACTIONS, UNDECIDED
from csl_core.run.store import RunStore
from pages._common import load_scores
from pages._text import isolated

DECISIONS = (UNDECIDED, *EFFECTIVE_ACTIONS)


@dataclass
class Filtered:
    """The outcome of :func:`sample_filters`: the queue and what made it."""

    queue: np.ndarray          # sample indices, most suspicious first by ``method``
    method: str                # the score ranked by
    values: np.ndarray         # (N,) that score of every sample, higher = more suspicious
    signature: str             # the filter settings, to tell one queue from another


@st.cache_data(max_entries=16, show_spinner=False)
def ranking(run_path: str, finished_epochs: int, method: str) -> np.ndarray:
    """Sample indices, most suspicious first by ``method`` (ties by sample order)."""
    values = suspicion(load_scores(run_path, finished_epochs), method)
    return np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")


def likely_end(queue: np.ndarray, order: np.ndarray, count: int) -> int:
    """How many of ``queue`` (sample indices, in the order of ``order``, a filtered part of it) come before
    the point where the ``count`` likely mislabeled ones end: the queue's members among the first ``count``
    samples of the whole ranking ``order``."""
    if count <= 0 or not len(queue):
        return 0
    return int(np.isin(queue, order[:count]).sum())


@st.cache_data(max_entries=8, show_spinner=False)
def display_names(run_path: str, finished_epochs: int) -> np.ndarray:
    """Every sample's name as a person reads it: file paths relative to the data root (their common
    folder), other ids as they are. ``(N,)`` object array."""
    ids = load_scores(run_path, finished_epochs)["sample_id"].astype(str).to_numpy(object)
    absolute = [i for i in ids[:1000] if os.path.isabs(i)]
    if len(ids) and len(absolute) == min(len(ids), 1000):
        try:
            root = os.path.commonpath(list(ids))
        except ValueError:   # mixed drives on Windows
            return ids
        if root and len(ids) > 1:
            cut = len(root.rstrip("/\\")) + 1
            return np.asarray([i[cut:] for i in ids], dtype=object)
    return ids


def names_for(store: RunStore) -> np.ndarray:
    return display_names(str(store.path), store.finished_epochs)


def short_score_name(method: str) -> str:
    """How a person calls a score where space is short ("kNN label disagreement"): its ``short`` name."""
    return SCORES[method].short


def sample_filters(store: RunStore, scores: pd.DataFrame, effective: pd.DataFrame, key: str, *,
                   decisions: tuple[str, ...] = (UNDECIDED,), flat: bool = False,
                   rank: bool = True, by_given: bool = True) -> Filtered:
    """Draw the filters (keys prefixed ``key``) and return the samples that pass, most suspicious first.

    ``flat`` draws the less used filters in a second row instead of an expander (for callers that
    already sit inside one); ``rank=False`` leaves out the score picker (ranking by CSL) and
    ``by_given=False`` the given-label filter (for pages that pick one class)."""
    classes = store.classes
    available = available_scores(scores)
    top = st.columns([4, 3, 3]) if rank else [None, *st.columns([3, 2])]
    method = default_score(scores)
    if rank:
        with top[0]:
            # the name only (read in full in the box); what each one is, in the help
            method = st.selectbox("Rank by", available, key=f"{key}_score", format_func=short_score_name,
                                  index=available.index(method),
                                  help="Every score is oriented so that the most suspicious sample comes first; "
                                       "the default is the one that ranks real label errors best (docs/benchmarks.md)."
                                       "\n\n" + "\n".join(f"- **{short_score_name(m)}**: {SCORES[m].label}"
                                                           for m in available))
    with top[1]:
        search = st.text_input("File name contains", key=f"{key}_search", placeholder="e.g. IMG_01 or cat/",
                               help="Case-insensitive; matched against the path relative to the data root.")
    with top[2]:
        chosen_decisions = st.multiselect("Decision", DECISIONS, default=list(decisions), key=f"{key}_decision",
                                          help="Empty: every sample, decided or not.")
    values = suspicion(scores, method)
    more = "score threshold, given and suggested label" if by_given else "score threshold, suggested label"
    with st.container() if flat else st.expander(f"More filters: {more}"):
        cells = st.columns(3)
        with cells[0]:
            bound = "at least" if SCORES[method].suspicious_when_high else "at most"
            threshold = st.number_input(f"{SCORES[method].label} {bound}", value=None, key=f"{key}_threshold",
                                        format="%.3f", placeholder="no threshold",
                                        help=_threshold_help(method))
        options = list(range(len(classes)))
        with cells[1]:
            given = st.multiselect("Given label", options, key=f"{key}_given",
                                   format_func=lambda c: f"{c}: {isolated(classes[c], 60)}") if by_given else []
        with cells[2]:
            suggested_in = st.multiselect("Suggested label", options, key=f"{key}_suggested",
                                          format_func=lambda c: f"{c}: {isolated(classes[c], 60)}",
                                          disabled="suggested_label" not in scores)
    mask = np.ones(len(scores), dtype=bool)
    if threshold is not None:
        raw = scores[method].to_numpy(np.float64)
        mask &= (raw >= threshold) if SCORES[method].suspicious_when_high else (raw <= threshold)
    if given:
        mask &= np.isin(scores["label"].to_numpy(), given)
    if suggested_in and "suggested_label" in scores:
        mask &= np.isin(scores["suggested_label"].to_numpy(), suggested_in)
    if chosen_decisions:
        mask &= np.isin(np.asarray(effective["action"].cat.codes),
                        [list(effective["action"].cat.categories).index(d) for d in chosen_decisions])
    if search.strip():
        names = pd.Series(names_for(store))
        mask &= names.str.contains(search.strip(), case=False, regex=False).to_numpy(bool)
    order = ranking(str(store.path), store.finished_epochs, method)
    signature = repr((str(store.path), method, search.strip(), tuple(chosen_decisions), threshold,
                      tuple(given), tuple(suggested_in)))
    return Filtered(queue=order[mask[order]], method=method, values=values, signature=signature)


def _threshold_help(method: str) -> str:
    if SCORES[method].suspicious_when_high:
        return "Only samples whose score is at least this (higher is more suspicious)."
    return "This score is suspicious when *low*: only samples whose score is at most this value."
