"""Run page: start, stop or resume training in the background and watch CSL form."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from csl_core.config import TrainConfig, default_epochs
from csl_core.data import SOURCES, DataError, check_source
from csl_core.data.sources import quote_path
from csl_core.engine.jobs import Job
from csl_core.engine.models import BACKBONES, MODELS, backbone_cache_path
from csl_core.errors import CSLError, InputError
from csl_core.run.folders import run_folder_for
from csl_core.run.layout import META
from csl_core.run.store import RunError, RunStore
from pages._common import (
    LIVE_REFRESH_SECONDS,
    decision_log,
    effective_for,
    job_registry,
    open_run_path,
    open_store,
    runs_root,
    scores_for,
    select_run,
    view_store,
)
from pages._run_live import live_charts, live_progress
from pages._text import plain

# Short enough to read in full in the select box at 1280 px; the help says the rest.
START_FROM = {"scratch": "Random (from scratch)", "imagenet": "ImageNet weights (torchvision)",
              "file": "A weights file (state dict)"}
CHART_REFRESH_SECONDS = 10.0
# the sources the form asks a path for, and how it asks (their entries in the one SOURCES table)
NEEDS_PATH = {name: kind.path_prompt for name, kind in SOURCES.items() if kind.path_prompt}

ss = st.session_state


def _new_run_name(kind: str, location: str = "") -> str:
    """``<source>-<date>-<time>``; for the user's own images the source is their folder's (or file's) name."""
    stem = Path(location.rstrip("/\\")).stem if location.strip() and kind in ("imagefolder", "csv") else kind
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.") or kind
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _spec() -> str:
    kind = ss.run_source
    location = (ss.get("run_location") or "").strip()
    return f"{kind}:{quote_path(location)}" if location and kind in NEEDS_PATH else kind


def _follow_recipe() -> None:
    """The epochs follow the source's recipe (and fine-tuning's), until the person sets a number of their own."""
    if ss.get("run_epochs") in (None, ss.get("run_epochs_auto")):
        ss["run_epochs"] = ss["run_epochs_auto"] = default_epochs(ss.get("run_source", "demo"),
                                                                  fine_tunes=_fine_tunes())


def _source_changed() -> None:
    """The run name follows the source, until the person types a name of their own; so do the epochs."""
    if ss.get("run_name") in ("", None, ss.get("run_name_auto")):
        ss["run_name"] = ss["run_name_auto"] = _new_run_name(ss.run_source, ss.get("run_location") or "")
    _follow_recipe()
    ss.pop("run_source_check", None)
    if ss.run_source in NEEDS_PATH and (ss.get("run_location") or "").strip():
        try:
            ss["run_source_check"] = ("ok", check_source(_spec()))
        except DataError as e:
            ss["run_source_check"] = ("error", str(e))


def _fine_tunes() -> bool:
    return ss.get("run_start_from", "scratch") != "scratch"


def _start_from_changed() -> None:
    ss.pop("run_model", None)  # the models offered differ: from scratch, or torchvision's backbones
    _follow_recipe()


def _weights_file() -> str | None:
    if ss.get("run_start_from") != "file":
        return None
    weights = (ss.get("run_weights") or "").strip()
    if not weights:
        raise InputError("Weights file: give the path of a state dict (.pt / .pth) of the chosen backbone")
    if not Path(weights).expanduser().is_file():
        raise InputError(f"Weights file {weights}: no such file")
    return str(Path(weights).expanduser())


def _config_from_form() -> TrainConfig:
    spec = _spec()
    check_source(spec)   # a bad path is a message on the form, never a failed run
    noise = ss.get("run_noise")
    # "auto" takes the source's recipe (the airbench CNN, batch 256, lr 0.2 for your own files), or when
    # fine-tuning, ResNet-18 with the fine-tuning recipe
    config = TrainConfig.for_source(spec, epochs=int(ss.run_epochs), eval_pass=bool(ss.run_eval),
                                    model=None if ss.run_model == "auto" else ss.run_model,
                                    inject_noise=None if noise is None else float(noise) / 100.0,
                                    subset=int(ss.run_subset) if ss.get("run_subset") else None,
                                    pretrained=ss.get("run_start_from") == "imagenet", weights=_weights_file())
    config.validate()
    return config


def _start() -> None:
    try:
        config = _config_from_form()
        name = (ss.run_name or "").strip() or _new_run_name(ss.run_source)
        out = run_folder_for(runs_root(), name)
        if (out / META).exists():
            raise RunError(f"{out} already holds a run; pick another name, or open it and press Resume")
        job_registry().start(Job(config, out), alone=True)
    except CSLError as e:
        ss["run_error"] = str(e)
        return
    select_run(out)
    ss["run_name"] = ss["run_name_auto"] = _new_run_name(ss.run_source, ss.get("run_location") or "")


def _resume(path: str) -> None:
    try:
        config = TrainConfig.from_run(RunStore(path).meta.get("config"), Path(path) / META)
        job_registry().start(Job(config, path, resume=True))
    except CSLError as e:
        ss["run_error"] = str(e)


def _stop(path: str) -> None:
    job = job_registry().get(path)
    if job is not None:
        job.stop()


def _open_by_path() -> None:
    path = (ss.get("run_open_path") or "").strip()
    try:
        RunStore(path)
    except RunError as e:
        ss["run_error"] = str(e)
        return
    select_run(str(Path(path)))


def new_run(store: RunStore | None) -> None:
    """The form that starts a new run."""
    with st.expander("New run", expanded=store is None or open_run_path() is None):
        if "run_name" not in ss:
            ss["run_name"] = ss["run_name_auto"] = _new_run_name("demo")
        if "run_epochs" not in ss:
            _follow_recipe()
        left, right = st.columns(2)
        with left:
            st.selectbox("Data", list(SOURCES), key="run_source", format_func=lambda name: SOURCES[name].label,
                         on_change=_source_changed,
                         help="The demo needs nothing installed: scikit-learn's digits with injected label noise and "
                              "duplicates, so the Evaluate page can show how many errors were found; it trains in "
                              "about 10 s on two idle CPU cores. My images: a folder ROOT/<class>/<image>, or a "
                              "CSV file with path,label columns.")
            if ss.run_source in NEEDS_PATH:
                st.text_input(NEEDS_PATH[ss.run_source], key="run_location", on_change=_source_changed)
                verdict = ss.get("run_source_check")
                if verdict is not None:
                    (st.caption if verdict[0] == "ok" else st.warning)(
                        f":material/check: {verdict[1]}" if verdict[0] == "ok" else verdict[1])
            st.text_input("Run name", key="run_name", help=f"The run folder: {runs_root()}/<name>")
        with right:
            st.selectbox("Initial weights", list(START_FROM), key="run_start_from", format_func=START_FROM.get,
                         on_change=_start_from_changed,
                         help="Fine-tuning an ImageNet backbone suits photos (a GPU helps: about 0.2 CPU-seconds a "
                              "photo an epoch at 224 px); it trains fewer epochs at a lower learning rate. ImageNet "
                              "weights are torchvision's, downloaded once into torch's cache; a weights file is a "
                              "state dict of the backbone.")
            if ss.run_start_from == "file":
                st.text_input("Weights file", key="run_weights", placeholder="/models/resnet18-imagenet.pth",
                              help="A state dict of torchvision's architecture of the chosen model, read without "
                                   "running code (weights_only); nothing is downloaded.")
            st.number_input("Epochs", min_value=1, max_value=500, key="run_epochs",
                            help="CSL sums every epoch's loss; 10-20 epochs separate clean from mislabeled well.")
            if _fine_tunes():
                st.selectbox("Model", ["auto", *BACKBONES], key="run_model",
                             help="auto: ResNet-18. torchvision's architecture with a new head for your classes.")
                if ss.run_start_from == "imagenet":
                    model = "resnet18" if ss.run_model == "auto" else ss.run_model
                    cached = backbone_cache_path(model).is_file()
                    st.caption(f":material/check: {model}'s ImageNet weights are in torch's cache" if cached else
                               f":material/download: {model}'s ImageNet weights will be downloaded when the run "
                               "starts (no internet? give a weights file instead)")
            else:
                st.selectbox("Model", ["auto", *MODELS], key="run_model",
                             help="auto: the airbench CNN for your own files and CIFAR; for the demo and "
                                  "Fashion-MNIST a small CNN (fast on a CPU). Other widths from the command line "
                                  "(airbench-x2).")
            st.number_input("Inject label noise (%)", min_value=0.0, max_value=50.0, value=None, step=1.0,
                            key="run_noise", placeholder="source default (demo 5%, others none)",
                            help="Flip this share of labels (seeded) to measure how well the flipped ones are found.")
            st.number_input("Subset (samples)", min_value=0, value=0, step=1000, key="run_subset",
                            help="Train on a seeded random subset; 0 uses every sample.")
            st.checkbox("Eval pass", key="run_eval",
                        help="Also score every sample once per epoch in eval mode without augmentation "
                             "(the authors' protocol; about 30-50% more time).")
        training = job_registry().active()
        if training:   # one training at a time from this form: Start becomes that run's Stop
            st.button(f"Stop {training[0].run_dir.name}", key="run_form_stop", on_click=_stop,
                      args=(str(training[0].run_dir),), icon=":material/stop:",
                      help="A run is training; Start comes back when it ends. Stop ends it after the current "
                           "batch (Resume continues it).")
        else:
            st.button("Start", type="primary", key="run_start", on_click=_start, icon=":material/play_arrow:")


def open_by_path() -> None:
    """Open any run folder by its path."""
    with st.expander("Open a run folder by path"):
        st.text_input("Run folder", key="run_open_path", placeholder="/data/runs/imagenet-gpu",
                      help="Any folder with a meta.json, e.g. one trained with `python -m csl_core train` on a "
                           "GPU box.")
        st.button("Open", key="run_open", on_click=_open_by_path)


def run_controls(path: str) -> tuple[Job | None, bool, bool]:
    """The open run's name, Stop / Resume and its state; returns its job, whether the job is active, and
    whether the page follows live epochs (its own job, or another process training the run)."""
    job = job_registry().get(path)
    status = job.status() if job is not None else None
    store = open_store()
    st.subheader(plain(Path(path).name, 120))

    active = bool(status and status.active)
    if active:   # a button on its own line is as wide as its label: never cut
        st.button("Stop", key="run_stop", on_click=_stop, args=(path,), icon=":material/stop:",
                  help="Ends after the current batch; the finished epochs are kept and Resume continues.")
    elif (store is not None and not store.meta.get("completed") and not store.is_locked() and store.meta.get("config")
          and not store.read_only):   # a run shown read-only is not trained further
        st.button("Resume", key="run_resume", type="primary", on_click=_resume, args=(path,),
                  icon=":material/replay:", help="Continue from the last finished epoch.")
    if status and status.state == "failed":
        st.error(f"Training failed: {plain(status.error)}")
        with st.expander("Traceback"):
            st.code(status.traceback or "", language="text")
    elif store is not None and store.is_locked() and not active:
        st.info("Another process is training this run; this page follows its epochs as they finish.")

    locked_elsewhere = store is not None and store.is_locked() and not active
    live = active or locked_elsewhere
    return job, active, live


def _standing(run: RunStore) -> dict | None:
    """Where the open run stands (:func:`csl_core.analysis.noise_rate.standing`), its count resting on the
    person's decisions too: computed again when an epoch finishes or the decision log grows."""
    return _standing_at(str(run.path), run.finished_epochs, decision_log(run).revision())


@st.cache_data(max_entries=8, show_spinner=False)
def _standing_at(run_path: str, finished_epochs: int, revision: int) -> dict | None:
    from csl_core.analysis.noise_rate import standing
    from csl_core.analysis.scores import default_score, suspicion

    store = view_store(run_path)
    probabilities = store.probabilities()
    epochs = store.report().get("epochs", [])
    if probabilities is None or not epochs:
        return None
    scores = scores_for(store)
    truth = scores["is_mislabeled"].to_numpy(bool) if "is_mislabeled" in scores else None
    ranking = default_score(scores)
    effective = effective_for(store)
    return {"ranking": ranking, **standing(scores, suspicion(scores, ranking), epochs[-1].get("accuracy"), truth,
                                           actions=effective["action"].to_numpy(object),
                                           sources=effective["source"].to_numpy(object))}


def where_you_stand() -> None:
    """Training accuracy, the estimated noise and the review budget it implies, and the memorised warning."""
    run = open_store()
    if run is None or not run.finished_epochs:
        return
    where = _standing(run)
    if where is None:
        return
    st.subheader("Where you stand")
    cells = st.columns(3)
    accuracy = where["train_accuracy"]
    cells[0].metric("Training accuracy", f"{accuracy:.3f}" if accuracy is not None else "-",
                    help="Last epoch, on the given labels.")
    cells[1].metric("Likely mislabeled", f"~{where['estimated_count']:,}",
                    help=f"{where['text']}: the run's one count (also `info`'s, Focused review's, the review budget "
                         "and the suggested cleaning's), the sum of every sample's probability that its label is "
                         "wrong (`p_wrong`), with its 90% interval; every decision you make counts as an answer (from "
                         "20 on). An audit (Focused review, queue *Audit*: your answers on a sample the tool picks) "
                         "makes it honest: docs/bench/trust.md.")
    cells[2].metric(f"Expected wrong in the top {where['k']:,}", f"{where['expected_wrong_in_top_k']:,.0f}",
                    help=f"Of the top {where['k']:,} of the review queue (by {where['ranking']}), how many are "
                         "expected to be wrong (the sum of their p_wrong).")
    text = (f"**{where['text'][0].upper() + where['text'][1:]}**: review the top **{where['k']:,}** of the queue "
            f"(ranked by `{where['ranking']}`).")
    if not where["answers"]:
        text += " Answer the audit in **Focused review** (40-100 images by keyboard) to make the count honest."
    if "true_in_top_k" in where:
        text += (f" This run has known ground truth: the top {where['k']:,} hold {where['true_in_top_k']:,} of "
                 f"its {where['true_count']:,} mislabeled samples.")
    st.markdown(text)
    if where["memorised"]:
        st.warning(f"Training accuracy {accuracy:.1%}: the network has memorised its labels, wrong ones "
                   "included. Their last-epoch loss is low and no longer separates them; rank by CSL or the "
                   "fused score (summed over training), not the final-epoch loss. The noise estimate is a "
                   "floor on such a run.")


def what_next(live: bool) -> None:
    """Once a run is complete: how many samples look mislabeled, and one click into the review."""
    run = open_store()
    if run is None or not run.meta.get("completed") or live:
        return
    where = _standing(run)
    if where is None:
        return
    with st.container(border=True):
        st.markdown("#### What next")
        st.markdown(f"Review the top **{where['k']:,}** of the queue (as many as the run's count of likely "
                    "mislabeled images), or accept the suggested cleaning on the Export page after looking at what "
                    "it does.")
        st.page_link("pages/focus.py", label="Review them one by one, most suspicious first (keyboard)",
                     icon=":material/keyboard:")
        st.page_link("pages/pairs.py", label="See which classes they are confused with", icon=":material/grid_on:")
        st.page_link("pages/export.py", label="The suggested cleaning: relabel, drop, keep",
                     icon=":material/cleaning_services:")


def run_page() -> None:
    st.title("Run")
    error = ss.pop("run_error", None)
    if error:
        st.error(error)
    path = open_run_path()
    job = job_registry().get(path)
    forms_first = job is None or not job.status().active   # while the open run trains, it comes first
    if forms_first:
        new_run(open_store())
        open_by_path()
    if path is None:
        st.info("Press **Start** to train the demo: its 12 epochs take about 10 s on two idle CPU cores, a minute "
                "or two when other work shares them.")
        st.stop()
    job, active, live = run_controls(path)
    # Two timers: the progress line every second, the charts only as often as an epoch can finish.
    # Redrawing plotly charts each second costs the browser (often on the same machine) more CPU
    # than the training it reports on.
    st.fragment(live_progress, run_every=LIVE_REFRESH_SECONDS if live else None)(job, active)
    what_next(live)
    st.fragment(live_charts, run_every=CHART_REFRESH_SECONDS if live else None)()
    where_you_stand()
    if not forms_first:
        new_run(open_store())
        open_by_path()

run_page()
