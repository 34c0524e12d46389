"""What every page shares: the open run, the background jobs, cached scores and decisions, thumbnails.

Pages stay thin: they read through these helpers, draw, and hand actions to ``csl_core``.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.engine.jobs import JobRegistry
from csl_core.errors import CSLError
from csl_core.run.decisions import DecisionLog
from csl_core.run.folders import list_runs
from csl_core.run.images import thumbnail, thumbnail_data_url
from csl_core.run.layout import META
from csl_core.run.store import RunError, RunStore, run_problems
from csl_core.run.tables import newer_format
from pages._text import isolated, middle, plain

RUN_KEY = "run_path"          # session key of the open run (the sidebar picker's widget key)
RUNS_DIR_KEY = "runs_dir"     # the sidebar's runs folder setting
URL_RUN = "run"               # the query parameter that names the open run, so reloads and bookmarks keep it
LIVE_REFRESH_SECONDS = 2.0


def runs_root() -> Path:
    """Where runs live: the sidebar's *Runs folder*, by default ``$CSL_RUNS_DIR``, else ``./runs``."""
    return Path((st.session_state.get(RUNS_DIR_KEY) or "").strip() or default_runs_root())


def default_runs_root() -> str:
    return os.environ.get("CSL_RUNS_DIR", "runs")


# ---------------------------------------------------------------- background jobs

@st.cache_resource
def job_registry() -> JobRegistry:
    return JobRegistry()


# ---------------------------------------------------------------- the open run

def run_choices() -> list[str]:
    """Run folders under the runs root, newest first, plus runs opened by path and runs training here
    (their folder may not exist yet)."""
    found = [str(p) for p in list_runs(runs_root())]
    extra = st.session_state.get("extra_runs", [])
    jobs = job_registry().all()
    preparing = [str(job.run_dir) for job in jobs if job.status().active]
    # A job that failed before its folder existed stays listed, last (never the default), so that its
    # error can be read.
    failed = [str(job.run_dir) for job in jobs
              if job.status().state == "failed" and not (job.run_dir / META).exists()]
    return list(dict.fromkeys([*preparing, *found, *extra, *failed]))


def open_run_path() -> str | None:
    return st.session_state.get(RUN_KEY)


def select_run(path: str | Path) -> None:
    """Make ``path`` the open run (call from a callback, before the picker is drawn)."""
    path = str(path)
    extra = st.session_state.setdefault("extra_runs", [])
    if path not in extra:
        extra.append(path)
    st.session_state[RUN_KEY] = path


def is_read_only(path: str | Path) -> bool:
    """Whether the run ``path`` is shown read-only: a folder this process cannot write. Viewing never writes;
    a read-only run takes no decision, export or training either. A run opened from the address is writable
    exactly as from the sidebar (the address opens only runs under the runs folder)."""
    return not os.access(path, os.W_OK)


def read_only_reason(path: str | Path) -> str | None:
    """Why the run ``path`` is read-only and the one thing that makes it writable (plain text), or ``None``."""
    if not is_read_only(path):
        return None
    try:
        owner = Path(path).owner()
    except (KeyError, OSError):
        owner = "its owner"
    return (f"This run is read-only: its folder {path} is not writable by the dashboard, so no decision, export "
            f"or training is saved. To make it writable, run  chmod -R u+w {path}  as {owner}, then reload the page.")


def view_store(path: str | Path) -> RunStore:
    """The run ``path`` as the pages read it: its derived results are not kept when it is read-only."""
    return RunStore(path, read_only=is_read_only(path))


def open_store() -> RunStore | None:
    path = open_run_path()
    if not path:
        return None
    try:
        store = view_store(path)
    except RunError:
        return None
    return None if run_problems(path) else store


def require_scored_run() -> RunStore:
    """The open run if it has at least one finished epoch; otherwise explain and stop the page."""
    store = open_store()
    if store is None:
        path = open_run_path()
        problems = run_problems(path) if path and Path(path, META).exists() else []
        if problems:
            st.error(("This run was made by a newer csl-clean and is not shown: " if newer_format(problems)
                      else "This run is damaged and is not shown: ") + plain(" ".join(problems)))
            st.stop()
        job = job_registry().get(path)
        if job is not None and job.status().active:
            st.info("The run is being prepared; its samples appear here after the first epoch.")
        else:
            st.info("No run is open. Start one on the **Run** page, or pick one in the sidebar.")
        st.stop()
    if store.finished_epochs == 0:
        st.info(f"Run **{plain(store.name)}** has no finished epoch yet; scores appear after the first one.")
        st.stop()
    return store


# ---------------------------------------------------------------- cached reads

def load_scores(run_path: str, finished_epochs: int, read_only: bool = False) -> pd.DataFrame:
    """Every score of every sample, recomputed only when an epoch finishes; for a run shown read-only
    (:func:`is_read_only`, whatever ``read_only`` says) nothing is kept in its folder: viewing never writes.

    One frame shared by every session and rerun, never copied (at 1.28M samples a copy per rerun
    costs seconds and hundreds of MB): treat it as read-only.
    """
    return _scores(str(run_path), int(finished_epochs), bool(read_only) or is_read_only(run_path))


@st.cache_resource(max_entries=6, show_spinner="Scoring samples...")
def _scores(run_path: str, finished_epochs: int, read_only: bool) -> pd.DataFrame:
    return RunStore(run_path, read_only=read_only).scores()


def scores_for(store: RunStore) -> pd.DataFrame:
    return load_scores(str(store.path), store.finished_epochs, bool(getattr(store, "read_only", False)))


def decision_log(store: RunStore) -> DecisionLog:
    return DecisionLog(store.path, read_only=bool(getattr(store, "read_only", False)))


@st.cache_data(max_entries=16, show_spinner=False)
def _effective(run_path: str, revision: int, num_samples: int, finished_epochs: int,
               read_only: bool = False) -> pd.DataFrame:
    labels = load_scores(run_path, finished_epochs, read_only)["label"].to_numpy(np.int64)
    return DecisionLog(run_path, read_only=read_only).effective(num_samples, labels)


def effective_for(store: RunStore) -> pd.DataFrame:
    """The effective decision of every sample, re-read only when the log grows."""
    revision = decision_log(store).revision()
    return _effective(str(store.path), revision, store.num_samples, store.finished_epochs,
                      bool(getattr(store, "read_only", False)))


def run_count(store: RunStore):
    """The run's one count of wrong labels (:func:`csl_core.analysis.noise_rate.noise_count`, a
    :class:`~csl_core.analysis.trust.WrongCount`) with the person's decisions as answers, or ``None`` when the run
    has no class evidence (no mean probabilities kept). Every page shows this one; computed again only when an
    epoch finishes or the decision log grows."""
    return _count(str(store.path), decision_log(store).revision(), store.num_samples, store.finished_epochs,
                  bool(getattr(store, "read_only", False)))


@st.cache_resource(max_entries=8, show_spinner=False)
def _count(run_path: str, revision: int, num_samples: int, finished_epochs: int, read_only: bool):
    from csl_core.analysis.noise_rate import noise_count

    scores = load_scores(run_path, finished_epochs, read_only)
    if "p_wrong" not in scores.columns:
        return None
    effective = _effective(run_path, revision, num_samples, finished_epochs, read_only)
    return noise_count(scores, effective["action"].to_numpy(object), effective["source"].to_numpy(object))


@st.cache_data(max_entries=32, show_spinner=False)
def loss_rows(run_path: str, finished_epochs: int, rows: tuple[int, ...]) -> np.ndarray:
    """Per-epoch loss of a few samples (reads only those rows of the memory map)."""
    loss = RunStore(run_path).array("loss")[:, :finished_epochs]
    return np.asarray(loss[np.asarray(rows, dtype=np.int64)], dtype=np.float64)


@st.cache_data(max_entries=8, show_spinner=False)
def class_mean_losses(run_path: str, finished_epochs: int) -> np.ndarray:
    """Every class's mean loss per epoch, ``(classes, epochs)``; kept in the folder of a completed run
    (by the trainer: a page never writes it)."""
    store = RunStore(run_path, read_only=True)
    return store.class_mean_loss()[:, :finished_epochs]


def class_mean_loss(run_path: str, finished_epochs: int, label: int) -> np.ndarray:
    return class_mean_losses(run_path, finished_epochs)[label]


def thumb(store: RunStore, index: int, size: int = 96) -> bytes | None:
    """A thumbnail, or ``None`` (with the reason logged to the page once) when the image is unreadable."""
    try:
        return thumbnail(store.path, int(index), size)
    except (OSError, CSLError) as e:
        st.session_state.setdefault("image_errors", {})[str(store.path)] = str(e)
        return None


def show_thumbnail(store: RunStore, index: int, size: int = 96, width: int | str = "stretch") -> None:
    """Draw a sample's thumbnail, or say that its image cannot be read."""
    image = thumb(store, index, size)
    if image is not None:
        st.image(image, width=width)
    else:
        st.caption("image not available")


def thumb_url(store: RunStore, index: int, size: int = 64) -> str | None:
    try:
        return thumbnail_data_url(store.path, int(index), size)
    except (OSError, CSLError):
        return None


# ---------------------------------------------------------------- wording

def decision_text(action: str, label: int, classes: list[str]) -> str:
    """Plain text (for tables and components); :func:`plain` it for a Markdown place."""
    return {"keep": "kept", "drop": "dropped", "relabel": f"relabeled to {isolated(classes[label])}"}.get(
        action, "undecided")


def tab_id() -> str:
    """This browser tab's id (one Streamlit session per tab): its decisions are recorded under it, and
    its undo cancels only what it made."""
    return st.session_state.setdefault("tab_id", uuid.uuid4().hex[:12])


def describe_batch(decisions: pd.DataFrame, classes: list[str]) -> str:
    """What a batch did, as a person says it: "relabel of 3 images to 'sneaker'", "drop of 7 images and keep
    of 1 image"; ``decisions`` has the columns ``action`` and ``label`` (one row per sample)."""
    parts = []
    for action, group in decisions.groupby("action", sort=False):
        count = len(group)
        text = f"{action} of {count:,} image{'s' if count != 1 else ''}"
        if action == "relabel":
            names = list(dict.fromkeys(classes[int(c)] for c in group["label"].dropna()))
            others = len(names) - 3
            more = f" and {others} other class{'es' if others != 1 else ''}" if others > 0 else ""
            text += " to " + ", ".join(f"'{name}'" for name in names[:3]) + more
        parts.append(text)
    return " and ".join(parts) or "nothing"


def batch_text(store: RunStore, batch: int) -> str:
    """:func:`describe_batch` of batch ``batch`` of the run's decision log."""
    return describe_batch(decision_log(store).batch(batch), store.classes)


def record(store: RunStore, indices, action: str, *, label=None, source: str, computed_at: int | None = None) -> None:
    """Append a decision and say what it did in a toast; a bad request is shown, never raised. ``computed_at``:
    the log's revision the page drew the samples from (a bulk action, refused if they were decided since)."""
    try:
        batch = decision_log(store).record(indices, action, label=label, source=source, tab=tab_id(),
                                           computed_at=computed_at)
    except CSLError as e:   # a bad request, a run shown read-only, decisions changed since
        st.session_state["decision_error"] = str(e)
        return
    st.session_state["last_decision"] = f"done: {batch_text(store, batch)} (undo takes it back)"


def undo(store: RunStore, *, source: str | None = None) -> None:
    """Take back this tab's last batch (from ``source``) and say what it was."""
    try:
        undone = decision_log(store).undo(source=source, tab=tab_id())
    except RunError as e:
        st.session_state["decision_error"] = str(e)
        return
    st.session_state["last_decision"] = f"undid: {batch_text(store, undone)}" if undone else "nothing to undo"


def show_decision_feedback() -> None:
    """Show the outcome of the callback that ran before this rerun (toasts survive the rerun)."""
    message = st.session_state.pop("last_decision", None)
    if message:
        st.toast(plain(message))   # it names classes: text, never Markdown
    error = st.session_state.pop("decision_error", None)
    if error:
        st.error(plain(error))


CLASS_PICKER_CHARS = 20


def pick_class(classes: list[str], key: str, *, label: str = "Class", all_option: bool = False) -> int | None:
    """A class picker returning the class index (``None`` for "all classes"); a long name shortened in the middle
    (the page names the class whole)."""
    options = ([None] if all_option else []) + list(range(len(classes)))
    return st.selectbox(label, options, key=key, format_func=lambda c: "All classes" if c is None
                        else f"{c}: {middle(classes[c], CLASS_PICKER_CHARS)}")
