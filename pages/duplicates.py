"""Duplicates page: exact and near-duplicate groups, highest CSL first. Actions in proportion to the evidence:
"keep one, drop the rest" only for a small group whose members are all shown; a large group is a warning;
a group with conflicting labels can take the label of one of its members; acting on more than a screenful
needs a second confirmation naming the count."""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from csl_core.analysis.crops import CROP_MAX_DISTANCE
from csl_core.analysis.duplicate_choice import DEFAULT_KEEP, KEEP_POLICIES, KIND_TEXT
from csl_core.analysis.duplicates import (
    DEFAULT_THRESHOLD,
    injected_pair_recall,
    is_dismissed,
    member_table,
    not_duplicate_sets,
)
from csl_core.errors import CSLError
from csl_core.run.decisions import Decision, DecisionLog
from csl_core.run.duplicate_files import kept_members
from csl_core.run.duplicates import find_duplicates
from csl_core.run.files import csv_safe
from csl_core.run.layout import EMBEDDINGS
from csl_core.run.store import RunStore
from pages._common import (
    batch_text,
    decision_log,
    decision_text,
    effective_for,
    load_scores,
    require_scored_run,
    scores_for,
    show_decision_feedback,
    show_thumbnail,
    tab_id,
    undo,
)
from pages._layout import middle_html
from pages._text import isolated, plain

SOURCE = "duplicates"
SHOWN_PER_GROUP = 8
# The largest group offered "keep one, drop the rest": every member is on screen (image, file, label).
SMALL_GROUP = SHOWN_PER_GROUP
# Relabelling more members than fit on a screen asks to tick a box naming the count first.
SCREENFUL = SHOWN_PER_GROUP
KEEP_TEXT = {"lowest-score": "lowest CSL", "highest-resolution": "highest resolution", "largest-file": "largest file",
             "first": "first"}


def _select_width(texts) -> int:
    """Pixels a select box needs to show the longest of ``texts`` in full (about 8 px a character at the
    dashboard's font size, plus the box's padding and arrow), at least 170."""
    return max(170, 8 * max((len(text) for text in texts), default=0) + 64)


@st.cache_data(max_entries=8, show_spinner="Searching for duplicates (the first time takes a while)...")
def load_report(run_path: str, finished_epochs: int, embeddings_stamp: float, threshold: float,
                read_only: bool = False, crop_limit: float = CROP_MAX_DISTANCE):
    """The groups at ``threshold`` and ``crop_limit``; the neighbour search behind them is cached in the run
    folder (unless the run is shown read-only)."""
    scores = load_scores(run_path, finished_epochs, read_only)  # labels and CSL already in memory
    store = RunStore(run_path, read_only=read_only)
    return find_duplicates(store, threshold=threshold, crop_limit=crop_limit, labels=scores["label"].to_numpy(),
                           csl=scores["csl"].to_numpy())


@st.cache_data(max_entries=8, show_spinner=False)
def load_kept(run_path: str, finished_epochs: int, embeddings_stamp: float, threshold: float, read_only: bool,
              crop_limit: float, policy: str) -> dict[int, int]:
    """Each group's member to keep under ``policy`` (files read once per setting, for grouped samples only)."""
    report = load_report(run_path, finished_epochs, embeddings_stamp, threshold, read_only, crop_limit)
    return kept_members(report, scores_for(store), policy)


def keep_key(anchor: int, policy: str) -> str:
    """The keep box's widget key: another one per policy, so that changing the policy offers its choice first."""
    return f"dup_keep_choice_{anchor}" if policy == DEFAULT_KEEP else f"dup_keep_choice_{anchor}_{policy}"


@st.cache_data(max_entries=8, show_spinner=False)
def load_dismissed(run_path: str, revision: int, read_only: bool = False) -> list[frozenset[int]]:
    return not_duplicate_sets(DecisionLog(run_path, read_only=read_only).history())


def act(decisions: list[Decision], *, note: str) -> None:
    """Append one click's decisions as one batch (one undo takes it back); the toast and errors go
    through the shared feedback keys."""
    try:
        batch = decision_log(store).record_batch(decisions, source=SOURCE, note=note, tab=tab_id())
    except CSLError as e:   # RunError: the run is shown read-only
        st.session_state["decision_error"] = str(e)
        return
    st.session_state["last_decision"] = f"done: {batch_text(store, batch)} (undo takes it back)"


def keep_one(members: list[int], anchor: int) -> None:
    if len(members) > SMALL_GROUP:  # never offered; a stale click of a group that grew does nothing
        st.session_state["decision_error"] = (f"this group now has {len(members)} images: too many to drop "
                                              "in one click")
        return
    keep = int(st.session_state[keep_key(anchor, st.session_state.get("dup_keep_policy", DEFAULT_KEEP))])
    act([Decision([m for m in members if m != keep], "drop"), Decision([keep], "keep")],
        note=f"duplicate group of {len(members)}: keep {keep}, drop the rest")


def relabel_all(members: list[int], anchor: int) -> None:
    if len(members) > SCREENFUL and not st.session_state.get(f"dup_relabel_confirm_{anchor}"):
        st.session_state["decision_error"] = f"tick the box to relabel all {len(members)} images first"
        return
    label = int(st.session_state[f"dup_relabel_to_{anchor}"])
    act([Decision(members, "relabel", label)], note=f"duplicate group of {len(members)}: relabel all")


def not_duplicates(members: list[int]) -> None:
    act([Decision(members, "not-duplicate")], note=f"group of {len(members)}: not duplicates")


st.title("Duplicates")
st.caption("The same picture twice, or nearly: exact copies (same pixels), near copies (re-encoded, resized or "
           "re-exposed: each picture, aligned with its copy, is much closer to it than to anything else) and possible "
           "crops (one picture a crop of the other, found by aligning zoom and shift; shown apart, check them). Groups "
           "whose members carry different labels are flagged; groups are ranked by the highest CSL inside them.")
store = require_scored_run()
classes = store.classes
embeddings = store.path / EMBEDDINGS
stamp = embeddings.stat().st_mtime if embeddings.is_file() else 0.0
show_decision_feedback()

filters = st.columns([2.6, 1.9, 1.7, 1.1, 1.1])
settings = st.columns([2.6, 2.0, 3.8])
with settings[0]:
    crop_limit = st.slider("Crop limit", 0.0, 0.01, CROP_MAX_DISTANCE, step=0.0005, format="%.4f", key="dup_crop_limit",
                           help="Two pictures, one a crop of the other once zoom and shift are aligned, are grouped as "
                                "a possible crop when their distance (1 - correlation) is at most this. Higher finds "
                                f"more crops (and more look-alikes); {CROP_MAX_DISTANCE} is what the benchmark picks "
                                "(docs/bench/duplicates.md); 0 leaves crops out.")
with settings[1]:
    keep_policy = st.selectbox("Keep by default", KEEP_POLICIES, index=KEEP_POLICIES.index(DEFAULT_KEEP),
                               format_func=KEEP_TEXT.get, key="dup_keep_policy",
                               help="Which copy of a group is offered first to keep: the lowest CSL (the one the model "
                                    "agreed with), the highest resolution or the largest file (from the run's files), "
                                    "or the first.")
with filters[0]:
    threshold = st.slider("Closeness ratio", 0.0, 0.5, DEFAULT_THRESHOLD, step=0.005, format="%.3f",
                          key="dup_threshold",
                          help="Two pictures are near duplicates when the distance between them (aligned: one "
                               "may be blurred or cropped) is at most this share of the distance to their 10th "
                               "most similar picture. Higher "
                               f"finds more groups (and more false ones); {DEFAULT_THRESHOLD} keeps false groups "
                               "under 0.5% on Fashion-MNIST and CIFAR-10N (docs/bench/duplicates.md). Exact "
                               "copies are always grouped.")
report = load_report(str(store.path), store.finished_epochs, stamp, float(threshold), store.read_only,
                     float(crop_limit))
for note in report.notes:
    st.info(note)
with filters[1]:
    conflicts_only = st.checkbox("Label conflicts only", value=False, key="dup_conflicts",
                                 help="Show only the groups whose members carry different labels.")
with filters[2]:
    open_only = st.checkbox("Undecided only", value=True, key="dup_open",
                            help="Hide groups whose every member is decided, and groups marked not duplicates.")
with filters[3]:
    per_page = st.selectbox("Groups", [10, 20, 50], key="dup_per_page")

effective = effective_for(store)
undecided = (effective["action"] == "undecided").to_numpy(bool)  # not 1.28M Python strings per rerun
dismissed = load_dismissed(str(store.path), decision_log(store).revision(), store.read_only)
groups = report.groups
if conflicts_only:
    groups = groups[groups["label_conflict"].to_numpy(bool)]  # a numpy mask: an empty Series would pick columns
if open_only:
    groups = groups[np.array([undecided[m].any() and not is_dismissed(m, dismissed)
                              for m in groups["members"]], dtype=bool)]
pages = max(1, math.ceil(len(groups) / per_page))
with filters[4]:
    page = st.number_input("Page", 1, pages, 1, key="dup_page", help=f"{pages} page(s)")

samples = scores_for(store)  # the sample table's columns, with the scores; already in memory
summary = st.columns(5)
summary[0].metric("Groups", f"{len(report.groups):,}")
summary[1].metric("Exact copies", f"{int(report.groups['exact'].sum()):,}")
summary[2].metric("Possible crops", f"{int(report.groups['kinds'].str.contains('crop').sum()):,}"
                  if len(report.groups) else "0")
summary[3].metric("Label conflicts", f"{int(report.groups['label_conflict'].sum()):,}")
summary[4].metric("Samples in groups", f"{int(report.groups['size'].sum()):,}")
kept = load_kept(str(store.path), store.finished_epochs, stamp, float(threshold), store.read_only, float(crop_limit),
                 keep_policy)
if "duplicate_of" in samples.columns and (samples["duplicate_of"] >= 0).any():
    found = injected_pair_recall(report.samples["group"].to_numpy(), samples["duplicate_of"].to_numpy(),
                                 report.groups)
    st.caption(f"Injected duplicates: {found['found_and_flagged']} of {found['pairs']} pairs grouped and flagged; "
               f"{found['false_groups']} group(s) hold no injected pair.")

tools = st.container(horizontal=True)   # each button as wide as its label
tools.button("Undo last duplicates action", key="dup_undo", on_click=undo, args=(store,),
             kwargs={"source": SOURCE}, icon=":material/undo:")
tools.download_button("Groups as CSV", csv_safe(member_table(report, samples, kept)).to_csv(index=False).encode(),
                      file_name=f"{store.name}-duplicates.csv", mime="text/csv", key="dup_download")
st.caption(f"{len(groups):,} group(s) match; page {page} of {pages}.")

labels = samples["label"].to_numpy(np.int64)
sample_ids = samples["sample_id"]  # looked up for the members shown only
paths = samples["path"] if "path" in samples.columns else None
csl = report.samples["csl"].to_numpy()
similarity = report.samples["similarity"].to_numpy()
for group in groups.iloc[(page - 1) * per_page: page * per_page].itertuples(index=False):
    members = [int(m) for m in group.members]
    anchor = min(members)  # stable widget keys while the threshold moves
    with st.container(border=True, key=f"dup_group_{anchor}"):
        names = ", ".join(plain(classes[c], 40) for c in group.labels)
        flag = f":red[label conflict: {names}]" if group.label_conflict else f"all **{names}**"
        kinds = [k for k in str(group.kinds).split(", ") if k] or ["near"]
        kind = " + ".join(f":orange[{KIND_TEXT[k]}]" if k == "crop" else KIND_TEXT[k] for k in kinds)
        if not group.exact:
            kind += f" · similarity {group.min_similarity:.3f}-{group.max_similarity:.3f}"
        note = " · :orange[marked not duplicates]" if is_dismissed(members, dismissed) else ""
        st.markdown(f"**#{group.rank}** · {group.size} images · {kind} · highest CSL {group.max_csl:.2f} · "
                    f"{flag}{note}")
        cells = st.columns(SHOWN_PER_GROUP)
        for cell, index in zip(cells, members[:SHOWN_PER_GROUP]):
            with cell:
                show_thumbnail(store, index)
                # the file on one line, shortened in the middle (the whole of it on hover), then the label
                whole = paths[index] if paths is not None else sample_ids[index]
                st.markdown(middle_html(whole), unsafe_allow_html=True, help=plain(whole))   # as wide as the cell
                lines = [plain(classes[labels[index]], 40), f"CSL {csl[index]:.2f} · sim {similarity[index]:.3f}"]
                if not undecided[index]:
                    decision = decision_text(effective.at[index, "action"], int(effective.at[index, "label"]), classes)
                    lines.append(f":blue[{plain(decision, 40)}]")
                if kept.get(int(group.group)) == index:
                    lines.append(f":green[kept by {KEEP_TEXT[keep_policy]}]")
                st.markdown("  \n".join(lines))
        small = len(members) <= SMALL_GROUP
        if not small:
            st.warning(f"{len(members)} images in one group: {len(members) - SHOWN_PER_GROUP} are not shown, and a "
                       "group this large is more often look-alikes than copies. Nothing here drops them in one "
                       "click; open the members in the review to decide one by one, or mark the group.",
                       icon=":material/warning:")
        buttons = st.container(horizontal=True, vertical_alignment="bottom")  # wraps rather than cuts a label
        # The member with the lowest CSL is the one the model agreed with: the natural one to keep.
        lowest = sorted(members, key=lambda m: (np.nan_to_num(csl[m], nan=np.inf), m))
        keeper = kept.get(int(group.group), lowest[0])
        offered = [keeper] + [m for m in lowest if m != keeper]  # the setting's choice first
        if small:
            # each member named as its card above names it (label, CSL), in a box wide enough to read it in full
            keep_text = {m: f"keep {isolated(classes[labels[m]], 40)} · CSL {csl[m]:.2f}" for m in offered}
            buttons.selectbox("Keep", offered, key=keep_key(anchor, keep_policy),
                              label_visibility="collapsed", width=_select_width(keep_text.values()),
                              format_func=keep_text.get,
                              help=f"The member kept by {KEEP_TEXT[keep_policy]} comes first (Keep by default).")
            buttons.button("Keep it, drop the rest", key=f"dup_keep_{anchor}", on_click=keep_one,
                           args=(members, anchor), help=f"Drops {len(members) - 1} image(s), all shown above.")
        if group.label_conflict:
            choices = sorted(set(int(labels[m]) for m in members), key=lambda c: (c != int(labels[lowest[0]]), c))
            counts = {c: int(sum(int(labels[m]) == c for m in members)) for c in choices}
            relabel_text = {c: f"the label of {counts[c]}: {isolated(classes[c], 40)}" for c in choices}
            buttons.selectbox("Give them all the label of", choices, key=f"dup_relabel_to_{anchor}",
                              label_visibility="collapsed", width=_select_width(relabel_text.values()),
                              format_func=relabel_text.get)
            confirmed = True
            if len(members) > SCREENFUL:
                confirmed = buttons.checkbox(f"yes, relabel all {len(members)} images",
                                             key=f"dup_relabel_confirm_{anchor}")
            buttons.button("Give them all this label", key=f"dup_relabel_{anchor}", on_click=relabel_all,
                           args=(members, anchor), disabled=not confirmed)
        buttons.button("Not duplicates", key=f"dup_not_{anchor}", on_click=not_duplicates, args=(members,),
                       help="These images only look alike: hide the group (it shows again if it grows).")
