"""Focused review: one sample at a time, large, decided by keyboard.

The queue is frozen when the filters are set (deciding does not reorder it). The view is a custom
component inside a fragment: a key shows the next, already loaded image at once, and only the
fragment reruns to record the decision and send the next images.
"""
from __future__ import annotations

import uuid
from contextlib import nullcontext

import numpy as np
import streamlit as st

from csl_core.analysis.audit import AUDIT_SIZE, MIN_ANSWERS
from csl_core.analysis.noise_rate import run_p_wrong
from csl_core.analysis.scores import SCORES, default_score
from csl_core.errors import CSLError, InputError
from csl_core.run.duplicates import cached_index, neighbour_index
from csl_core.run.images import image_data_url
from csl_core.run.layout import EMBEDDINGS
from csl_core.run.store import RunStore
from pages._audit import AUDIT_CHOICE, REVIEW_CHOICE, audit_help, audit_queue
from pages._common import (
    class_mean_losses,
    decision_log,
    decision_text,
    effective_for,
    loss_rows,
    read_only_reason,
    require_scored_run,
    run_count,
    scores_for,
    thumb_url,
)
from pages._components import focus_view
from pages._filters import likely_end, names_for, ranking, sample_filters
from pages._text import plain, plain_list

VIEW_KEY = "foc_view"
BEHIND, AHEAD = 8, 32          # samples sent either side of the cursor (the ahead ones are preloaded)
NEIGHBOURS_SHOWN = 6
# Above this the page does not wait for the search (faiss: about 80 s at 100k x 512 on two busy cores);
# neighbours are shown where `python -m csl_core duplicates RUN --embedding-neighbours` searched them.
NEIGHBOURS_SEARCH_LIMIT = 200_000
ss = st.session_state


@st.cache_data(max_entries=256, show_spinner=False)
def large_image(run_path: str, created: float, index: int) -> str | None:
    """The sample's own image (not the thumbnail) as a data URL; ``created`` tells a replaced run apart."""
    try:
        return image_data_url(run_path, index)
    except (OSError, CSLError):
        return None


@st.cache_resource(max_entries=4, show_spinner="Finding every sample's nearest neighbours...")
def neighbours(run_path: str, finished_epochs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(indices, similarities)``, ``(N, k)`` most similar first, or ``None`` when not searched."""
    store = RunStore(run_path, read_only=True)   # a page never writes the search's cache (Duplicates may, when allowed)
    if not (store.path / EMBEDDINGS).exists():
        return None
    if store.num_samples > NEIGHBOURS_SEARCH_LIMIT:
        index = cached_index(store)  # what `duplicates --embedding-neighbours` saved, if anything
        if index is None:
            return None
    else:
        index, _ = neighbour_index(store, embeddings=True)
    found = index.embedding_indices
    return (found, index.embedding_similarities) if found is not None and found.shape[1] else None


def digit_keys(classes: list[str]) -> str:
    """Which class each digit key relabels to (Markdown), in the run's class order, where the keys are used."""
    keys = " · ".join(f"**{c}** {plain(name, 40)}" for c, name in enumerate(classes[:10]))
    more = f"; classes 10 to {len(classes) - 1}: the *relabel to* box" if len(classes) > 10 else ""
    return f"Digit keys relabel to: {keys}{more}."


def session_source() -> str:
    """This tab's decision source, so that U undoes only this view's own decisions in this tab."""
    return ss.setdefault("foc_source", f"focus-{uuid.uuid4().hex[:8]}")


def apply_events(store: RunStore, queue: np.ndarray, payload) -> str | None:
    """Record the view's events newer than the last one recorded; returns an error to show, if any.

    ``payload`` is what the component sent: ``{"queue": id, "list": [events]}``; each event has a
    ``seq`` (increasing), a ``kind`` (decide / undo / move), a ``cursor`` and for decisions the
    ``action``, sample ``index``, queue position ``pos`` and ``label``.
    """
    if not isinstance(payload, dict) or payload.get("queue") != ss.get("foc_queue_id"):
        return None
    log = decision_log(store)
    error = None
    for event in payload.get("list") or []:
        try:   # the component's event, parsed: what it sent is checked here, before the decision log sees it
            seq, kind = int(event["seq"]), event.get("kind")
            pos, index = (int(event["pos"]), int(event["index"])) if kind == "decide" else (0, 0)
            action, label = str(event.get("action")), event.get("label")
            label = None if label is None else int(label)
            cursor = int(event.get("cursor", ss.get("foc_cursor", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            error = f"A decision could not be recorded: the review sent an event that is not one ({e})"
            continue
        if seq <= ss.get("foc_ack", 0):
            continue
        try:
            if kind == "decide":
                if not 0 <= pos < len(queue) or int(queue[pos]) != index:
                    raise InputError(f"sample {index} is not at position {pos + 1} of this queue")
                if action == "relabel" and label is None:
                    raise InputError(f"sample {index}: relabel without a label")
                log.record([index], action, label=label, source=session_source())
            elif kind == "undo":
                log.undo(source=session_source())
            ss["foc_cursor"] = min(max(0, cursor), max(0, len(queue) - 1))
        except CSLError as e:   # a bad request, or the run is shown read-only
            error = f"A decision could not be recorded: {e}"
        ss["foc_ack"] = max(ss.get("foc_ack", 0), int(event.get("seq", 0)) if isinstance(event, dict) else 0)
    return error


st.title("Focused review")
st.caption("One image at a time, most suspicious first. Keys: **A** accept the suggested label, **K** keep, "
           "**D** drop, **0-9** relabel to that class (below), **→ / L** next, **← / J** previous, **U** undo. "
           "Every decision is saved at once.")
store = require_scored_run()
st.caption(digit_keys(store.classes))
read_only = read_only_reason(store.path)
if read_only:   # the keys would decide nothing: said before the first one is pressed
    st.warning(plain(read_only, 600), icon=":material/lock:")
scores = scores_for(store)
effective = effective_for(store)
# The audit needs the model's p(wrong) (a run with class evidence): a fixed list, whatever the filters say.
auditing = "p_wrong" in scores.columns and st.radio(
    "Queue", [REVIEW_CHOICE, AUDIT_CHOICE], key="foc_mode", horizontal=True, help=audit_help()) == AUDIT_CHOICE
refresh = False
if auditing:
    st.caption(f"The audit: {AUDIT_SIZE} images picked across the model's p(wrong). **K** the label is right, "
               f"**A** or a digit relabel, **D** wrong (drop). Your answers set the count from {MIN_ANSWERS} on.")
    fresh_queue = audit_queue(str(store.path), store.finished_epochs, store.name)
    signature = repr(("audit", str(store.path), store.finished_epochs))
    method = default_score(scores)
else:
    with st.expander("Queue: which samples, in which order", icon=":material/filter_list:"):
        filtered = sample_filters(store, scores, effective, "foc", flat=True)
        refresh = st.button("Refresh the queue", key="foc_refresh", help="Take the filters again (drops the samples "
                                                                         "decided since, under *Decision: undecided*).")
    fresh_queue, signature, method = filtered.queue, filtered.signature, filtered.method
if ss.get("foc_signature") != signature or refresh:
    ss["foc_signature"] = signature
    ss["foc_queue"] = fresh_queue
    ss["foc_queue_id"] = uuid.uuid4().hex
    # the audit goes on at its first unanswered question
    open_questions = np.flatnonzero(effective["action"].to_numpy(object)[fresh_queue] == "undecided")
    ss["foc_cursor"] = int(open_questions[0]) if auditing and len(open_questions) else 0
queue: np.ndarray = ss["foc_queue"]
classes = store.classes
values = scores[method].to_numpy(np.float64)
labels = scores["label"].to_numpy(np.int64)
suggested = scores["suggested_label"].to_numpy(np.int64) if "suggested_label" in scores else None
confidence = scores["suggested_confidence"].to_numpy(np.float64) if suggested is not None else None
ranks = scores["csl_rank"].to_numpy(np.int64)
p_wrong_model = run_p_wrong(scores) if "p_wrong" in scores.columns else None
names = names_for(store)
run_path = str(store.path)
created = float(store.meta.get("created", 0.0))


def item(pos: int, index: int, state: dict[str, np.ndarray], class_loss: np.ndarray, loss: np.ndarray,
         near: tuple[np.ndarray, np.ndarray] | None, held: set[int]) -> dict:
    """What the view shows of the sample at queue position ``pos``; its images (the sample's, its
    neighbours') only if the view does not hold them already (``held``: positions the view reported
    with its last event)."""
    action = str(state["action"][index])
    found: list[dict] | None = None if pos in held else []
    if near is not None and found is not None:
        for j, similarity in zip(near[0][index], near[1][index]):
            if j < 0 or j == index or len(found) >= NEIGHBOURS_SHOWN:
                continue
            found.append({"image": thumb_url(store, int(j), 56), "label": int(labels[j]),
                          "similarity": float(similarity)})
    return {
        "pos": pos, "index": index, "name": str(names[index]),
        "image": None if pos in held else (large_image(run_path, created, index) or ""),   # "": unreadable
        "given": int(labels[index]),
        "suggested": int(suggested[index]) if suggested is not None else None,
        "probability": float(confidence[index]) if confidence is not None else 0.0,
        "p_wrong": float(p_wrong_model[index]) if p_wrong_model is not None else None,
        "score_text": f"{values[index]:.3f}", "rank": int(ranks[index]),
        "action": action, "decision": decision_text(action, int(state["label"][index]), classes),
        "loss": [round(float(v), 4) for v in loss],
        "class_loss": [round(float(v), 4) for v in class_loss[labels[index]]],
        "neighbours": found,
    }


def likely_marker() -> dict | None:
    """The run's one count (:func:`pages._common.run_count`, the person's decisions included) and where the likely
    mislabeled ones end in this queue: ``{"count", "text", "end"}`` (how many of the queue's first samples are
    among that many of the whole ranking), or ``None`` without a count."""
    count = run_count(store)
    if count is None:
        return None
    text = count.text()
    if auditing and not count.answers:
        text += f"; your answers count from {MIN_ANSWERS} on"
    return {"count": count.count, "text": text,
            "end": likely_end(queue, ranking(run_path, store.finished_epochs, method), count.count)}


@st.fragment
def review() -> None:
    payload = (ss.get(VIEW_KEY) or {}).get("events")
    error = apply_events(store, queue, payload)
    held = set()
    if isinstance(payload, dict) and payload.get("queue") == ss["foc_queue_id"]:
        held = {p for p in payload.get("have") or [] if isinstance(p, int)}
    cursor = ss.get("foc_cursor", 0)
    window = range(max(0, cursor - BEHIND), min(len(queue), cursor + AHEAD))
    rows = tuple(int(queue[p]) for p in window)
    # The first draw of a queue (after a server restart: seconds) says what it is doing; the reruns a key
    # makes do not flicker.
    first = ss.get("foc_drawn") != ss["foc_queue_id"]
    with st.spinner("Loading the first images, their losses and nearest neighbours...") if first else nullcontext():
        effective_now = effective_for(store)
        state = {"action": effective_now["action"].to_numpy(), "label": effective_now["label"].to_numpy()}
        near = neighbours(run_path, store.finished_epochs)
        loss = loss_rows(run_path, store.finished_epochs, rows) if rows else np.zeros((0, 0))
        class_loss = class_mean_losses(run_path, store.finished_epochs)
        decided = state["action"] != "undecided"
        data = {
            "queue": ss["foc_queue_id"], "cursor": cursor, "ack": ss.get("foc_ack", 0), "total": len(queue),
            "decided": int(decided[queue].sum()) if len(queue) else 0,   # this queue's progress
            "run_decided": int(decided.sum()), "samples": int(store.num_samples),   # the run's decision log
            "read_only": read_only or "", "likely": likely_marker(), "audit": auditing,
            "classes": plain_list(classes), "score_label": SCORES[method].label, "error": error,
            "neighbours_note": "No neighbour search for this run (it has no embeddings, or the Duplicates page "
                               "has not searched it yet)." if near is None else "",
            "items": [item(p, i, state, class_loss, loss[n], near, held)
                      for n, (p, i) in enumerate(zip(window, rows))],
        }
    ss["foc_drawn"] = ss["foc_queue_id"]
    focus_view(key=VIEW_KEY, data=data, default={"events": None}, on_events_change=lambda: None)


review()
