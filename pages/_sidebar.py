"""The sidebar every page shares (the run picker, the run named in the address, the read-only notice, the live
job state) and what a page shows when it fails."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from csl_core.engine.jobs import JobStatus
from csl_core.errors import REPORT_BUG, CSLError
from csl_core.run.layout import META
from csl_core.run.store import RunError, RunStore, run_problems
from csl_core.run.tables import newer_format
from pages._common import (
    LIVE_REFRESH_SECONDS,
    RUN_KEY,
    RUNS_DIR_KEY,
    URL_RUN,
    default_runs_root,
    job_registry,
    open_run_path,
    open_store,
    read_only_reason,
    run_choices,
    runs_root,
    select_run,
)
from pages._text import isolated, plain


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
                         format_func=lambda p: isolated(Path(p).name, 80) + (
                             "" if p not in damaged else " (newer version)" if newer_format(run_problems(p))
                             else " (damaged)"),
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
    """What a page shows when it fails. A :class:`CSLError` (the open run's files make it fail: damaged or
    inconsistent) is said in a line, its traceback in the server's log; anything else is a bug: its traceback
    is shown, with where to report it."""
    import logging

    logging.getLogger("csl_clean.pages").exception("a page failed on run %s", st.session_state.get(RUN_KEY))
    if not isinstance(error, CSLError):
        st.error(REPORT_BUG)
        st.exception(error)
        return
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
