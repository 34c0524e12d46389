"""The thumbnail grid (a components-v2 view) and what its actions do: Galleries and Class pairs use it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.run.store import RunStore
from pages._common import decision_text, record, thumb_url
from pages._components import thumbnail_grid
from pages._filters import names_for
from pages._text import isolated, plain_list

GRID_ACTIONS = ("accept", "keep", "drop", "relabel")


def apply_grid_action(store: RunStore, payload, *, suggested: np.ndarray | None, source: str) -> None:
    """Record what the grid sent: ``{"action", "indices", "label"}``; one batch per click.

    ``accept`` relabels each sample to its own suggested label; a bad request becomes the page's
    error message (via :func:`pages._common.record`), never an exception.
    """
    if not isinstance(payload, dict) or payload.get("action") not in GRID_ACTIONS:
        return
    try:
        indices = [int(i) for i in payload.get("indices") or []]
    except (TypeError, ValueError):
        st.session_state["decision_error"] = "The grid sent sample indices that are not integers."
        return
    if not indices:
        return
    action = payload["action"]
    if action == "accept":
        if suggested is None:
            st.session_state["decision_error"] = "This run has no suggested labels to accept."
            return
        labels = [int(suggested[i]) if 0 <= i < len(suggested) else -1 for i in indices]
        record(store, indices, "relabel", label=labels, source=source)   # the log rejects a bad index
    elif action == "relabel":
        label = payload.get("label")
        if label is None:
            st.session_state["decision_error"] = "Relabel needs a class."
            return
        record(store, indices, "relabel", label=int(label), source=source)
    else:
        record(store, indices, action, source=source)


def grid_items(store: RunStore, scores: pd.DataFrame, effective: pd.DataFrame, indices: np.ndarray,
               size: int) -> list[dict]:
    """What each card shows, for the samples ``indices`` in that order."""
    names = names_for(store)
    classes = store.classes
    suggested = scores["suggested_label"].to_numpy() if "suggested_label" in scores else None
    confidence = scores["suggested_confidence"].to_numpy() if suggested is not None else None
    labels = scores["label"].to_numpy()
    csl = scores["csl"].to_numpy()
    ranks = scores["csl_rank"].to_numpy()
    actions = effective["action"].to_numpy()
    new_labels = effective["label"].to_numpy()
    pixels = min(384, 2 * size)   # sharp at the card's size, and for the preview on hover
    large = max(store.meta.get("image_shape", [0, 0, 0])[-2:] or [0]) > 64
    items = []
    for index in (int(i) for i in indices):
        action = str(actions[index])
        items.append({
            "index": index, "image": thumb_url(store, index, pixels), "name": isolated(names[index]), "photo": large,
            "rank": int(ranks[index]), "csl": f"{csl[index]:.2f}", "given": int(labels[index]),
            "suggested": int(suggested[index]) if suggested is not None else None,
            "probability": float(confidence[index]) if confidence is not None else 0.0,
            "action": action, "decision": decision_text(action, int(new_labels[index]), classes),
        })
    return items


def show_grid(store: RunStore, scores: pd.DataFrame, effective: pd.DataFrame, indices: np.ndarray, *, key: str,
              size: int, source: str, empty: str = "No images here.") -> None:
    """Draw the grid of ``indices``; its actions are recorded with ``source`` before the next run draws."""
    suggested = scores["suggested_label"].to_numpy() if "suggested_label" in scores else None

    def on_action() -> None:
        state = st.session_state.get(key) or {}
        apply_grid_action(store, state.get("action"), suggested=suggested, source=source)

    data = {"classes": plain_list(store.classes), "size": int(size), "empty": empty,
            "items": grid_items(store, scores, effective, indices, size)}
    thumbnail_grid(key=key, data=data, on_action_change=on_action)
