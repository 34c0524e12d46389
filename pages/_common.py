"""What every page shares: the open run, the background jobs, cached scores and decisions, thumbnails.

Pages stay thin: they read through these helpers, draw, and hand actions to ``csl_core``.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from csl_core.engine.jobs import Job, JobStatus
from csl_core.errors import CSLError
from csl_core.run.decisions import DecisionLog
from csl_core.run.folders import list_runs
from csl_core.run.images import thumbnail, thumbnail_data_url
from csl_core.run.layout import META
from csl_core.run.store import RunError, RunStore, run_problems
from pages._text import isolated, plain

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

class JobRegistry:
    """The training jobs of this Streamlit process, by run folder; shared by every session and tab."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def get(self, run_path: str | Path | None) -> Job | None:
        if run_path is None:
            return None
        with self._lock:
            return self._jobs.get(_key(run_path))

    def start(self, job: Job, *, alone: bool = False) -> Job:
        """Start ``job``; refused while its run folder trains, and with ``alone`` while any job trains (the
        New run form: a second click on Start, or a second tab, never starts a second training)."""
        with self._lock:
            current = self._jobs.get(_key(job.run_dir))
            if current is not None and current.status().active:
                raise RunError(f"{job.run_dir} is already training; stop it first")
            busy = [other for other in self._jobs.values() if other.status().active]
            if alone and busy:
                raise RunError(f"{busy[0].run_dir.name} is training; stop it first, or wait until it finishes")
            self._jobs[_key(job.run_dir)] = job
            return job.start()   # under the lock: "preparing" before any other start can look

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> list[Job]:
        return [job for job in self.all() if job.status().active]


def _key(run_path: str | Path) -> str:
    return str(Path(run_path).resolve())


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
            st.error("This run is damaged and is not shown: " + plain(" ".join(problems)))
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


@st.cache_data(max_entries=8, show_spinner=False)
def likely_mislabeled(run_path: str, finished_epochs: int) -> int | None:
    """How many samples of the run are likely mislabeled (the run's own estimate: the confident joint on its
    mean probabilities, a floor on a memorised run), or ``None`` when the run has no probabilities. The one
    place the dashboard asks for that count."""
    from csl_core.analysis.noise_rate import estimate_label_noise

    probabilities = RunStore(run_path).probabilities()
    if probabilities is None:
        return None
    labels = load_scores(run_path, finished_epochs)["label"].to_numpy(np.int64)
    return estimate_label_noise(labels, np.asarray(probabilities)).count


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
    except (OSError, LookupError, ValueError) as e:
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
    except (OSError, LookupError, ValueError):
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
    except (ValueError, CSLError) as e:   # a bad request, a run shown read-only, decisions changed since
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


# ---------------------------------------------------------------- the sidebar (every page)

def sidebar() -> None:
    """The run picker and the live job state, drawn by ``app.py`` before every page."""
    url_error = _open_run_from_url()
    with st.sidebar:
        choices = run_choices()
        damaged = {p for p in choices if Path(p, META).exists() and run_problems(p)}
        if st.session_state.get(RUN_KEY) not in choices:
            # The newest healthy run opens by default; a damaged one is listed, marked, never chosen for you.
            healthy = [p for p in choices if p not in damaged]
            st.session_state[RUN_KEY] = (healthy or choices or [None])[0]
        if choices:
            st.selectbox("Open run", choices, key=RUN_KEY,
                         format_func=lambda p: isolated(Path(p).name, 80) + (" (damaged)" if p in damaged else ""),
                         help=f"Run folders under {runs_root()}/ (newest first) and runs opened by path.")
        else:
            st.caption(f"No runs yet under {runs_root()}/. Start one on the Run page.")
        if url_error:
            st.warning(plain(url_error))
        _read_only_notice()
        _sidebar_job_state()
        with st.expander("Settings", icon=":material/settings:"):
            st.text_input("Runs folder", value=default_runs_root(), key=RUNS_DIR_KEY,
                          help="Where runs are listed and new runs are written. Its default is the "
                               "CSL_RUNS_DIR environment variable, else ./runs.")
    current = st.session_state.get(RUN_KEY)
    if current and st.query_params.get(URL_RUN) != current:
        st.query_params[URL_RUN] = current


def _open_run_from_url() -> str | None:
    """Open the run the URL names (``?run=PATH``), once per session; an error message if it cannot be opened."""
    if st.session_state.get("url_run_read"):
        return None
    st.session_state["url_run_read"] = True
    path = st.query_params.get(URL_RUN)
    if not path:
        return None
    # Every address goes through the same check and gate, a run training on this server included.
    try:
        root = runs_root().resolve()
        where = Path(path).resolve()
        outside = where == root or not where.is_relative_to(root)  # a link could name any folder on the server
    except (OSError, ValueError):   # a NUL byte, a name too long for the file system
        return (f"The address names {plain(path[:80])!r}, which is not a folder this dashboard can open; pick a "
                "run in the sidebar")
    if outside:
        return (f"The address names {path}, which is not a run under the runs folder {runs_root()}; only runs "
                "there open from an address. Open another folder on the Run page (Open a run by path)")
    if job_registry().get(path) is None:    # a run still being prepared has no meta.json yet
        try:
            RunStore(path)
        except RunError as e:
            return f"The run in the address cannot be opened: {e}"
    select_run(path)
    return None


def show_failure(error: Exception) -> None:
    """What a page shows instead of a traceback when the open run's files make it fail: the run is damaged
    (or inconsistent), with the error; the full traceback goes to the server's log only."""
    import logging

    logging.getLogger("csl_clean.pages").exception("a page failed on run %s", st.session_state.get(RUN_KEY))
    kind = "" if isinstance(error, RunError) else f"{type(error).__name__}: "
    st.error(f"This run is damaged or inconsistent and cannot be shown here ({plain(kind + str(error), 600)}). "
             "Pick another run in the sidebar, or train this one again.")


def _read_only_notice() -> None:
    """Say that the open run is read-only, why, and what makes it writable."""
    path = st.session_state.get(RUN_KEY)
    reason = read_only_reason(path) if path and Path(path).is_dir() else None
    if reason:
        st.info(plain(reason, 600))


def _sidebar_job_state() -> None:
    registry = job_registry()
    active = bool(registry.active())

    @st.fragment(run_every=LIVE_REFRESH_SECONDS * 2.5 if active else None)
    def job_state():
        job = registry.get(open_run_path())
        if job is None:
            store = open_store()
            if store is not None:
                meta = store.meta
                done = "finished" if meta.get("completed") else "not finished"
                st.caption(f"{meta['finished_epochs']}/{meta['epochs']} epochs · {done} · "
                           f"{plain(meta.get('source', ''), 80)}")
            return
        status = job.status()
        st.progress(status.fraction, text=job_state_text(status))
        if status.state == "failed":
            st.caption(f":red[{plain(status.error)}]")
        if active != bool(registry.active()):
            st.rerun()   # a job started or ended: redraw the whole page once

    job_state()


def job_state_text(status: JobStatus) -> str:
    text = f"{status.state} · epoch {status.epoch}/{status.epochs}"
    if status.active and status.eta_seconds is not None:
        text += f" · ETA {format_seconds(status.eta_seconds)}"
    return text


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def pick_class(classes: list[str], key: str, *, label: str = "Class", all_option: bool = False) -> int | None:
    """A class picker returning the class index (``None`` for "all classes")."""
    options = ([None] if all_option else []) + list(range(len(classes)))
    return st.selectbox(label, options, key=key,
                        format_func=lambda c: "All classes" if c is None else f"{c}: {isolated(classes[c], 60)}")
