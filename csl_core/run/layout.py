"""The run folder's files: one table of every file a run folder may hold, who writes it, in which format,
and how a reader checks it. Every reader and writer names a file through the constants below.

A run folder is the contract between the trainer (or anyone's training through :class:`RunWriter`), the
CLI, the dashboard and the benchmark; ``FORMAT_VERSION`` is written into ``meta.json`` when a run is
created and checked whenever one is opened, so a run made by a newer csl-clean is refused with a message
rather than misread.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: The layout this csl-clean writes and the newest it reads.
FORMAT_VERSION = 1

META = "meta.json"
SAMPLES = "samples.csv"
ARRAYS = "arrays"
PROBABILITIES = "probabilities.npy"
EMBEDDINGS = "embeddings.npy"
IMAGES = "images.npy"
CHECKPOINT = "checkpoint.pt"
REPORT = "report.json"
NEIGHBOURS = "neighbours.npz"
FINGERPRINTS = "fingerprints.npz"
DECISIONS = "decisions.sqlite"
LOCK = "lock"
EXPORT = "export"
MEMORIZATION = "memorization"
MEMORIZATION_SETTINGS = f"{MEMORIZATION}/settings.json"
MEMORIZATION_MODELS = f"{MEMORIZATION}/models"
MEMORIZATION_MODEL = f"{MEMORIZATION_MODELS}/model-<model>.npz"
MEMORIZATION_ESTIMATE = f"{MEMORIZATION}/estimate.parquet"
MEMORIZATION_COMPARISON = f"{MEMORIZATION}/comparison.json"
MEMORIZATION_LOG = f"{MEMORIZATION}/log.json"
MEMORIZATION_LOCK = f"{MEMORIZATION}/lock"
# What a completed run keeps (run/kept.py), named after its finished epochs (and the score table's version).
KEPT_SCORES, KEPT_CLASS_LOSS, KEPT_EVALUATION = "scores", "class-loss", "evaluation"
KEPT_SCORES_FILE = f"{KEPT_SCORES}-<epochs>-<score set>.parquet"
KEPT_CLASS_LOSS_FILE = f"{KEPT_CLASS_LOSS}-<epochs>.npy"
KEPT_EVALUATION_FILE = f"{KEPT_EVALUATION}-<epochs>-<score set>.json"


@dataclass(frozen=True)
class RunFile:
    """One file (or folder) of a run folder: its name (``<...>`` a part that varies), what writes it, its
    format, how a reader checks it, and what it holds."""

    name: str
    writer: str
    format: str
    checksum: str
    holds: str
    #: Written only by the process holding the run's lock (trainer, RunWriter): a temporary file of it left
    #: by a killed writer is removed when the lock is next taken (``run.folders.remove_leftovers``).
    locked_writer: bool = False


RUN_FILES: dict[str, RunFile] = {f.name: f for f in (
    RunFile(META, "RunStore.create, update_meta (tables.write_meta)", "JSON",
            "whole JSON; format_version checked on opening",
            "source, classes, model, settings, versions, finished epochs, checksums"),
    RunFile(SAMPLES, "RunStore.create", "CSV", "size and SHA-256 in meta.json (checked before a resume)",
            "index, sample id (or path), given label, class name, image index, injected truth"),
    RunFile(f"{ARRAYS}/<field>.npy", "RunStore.create (preallocated), RunStore.write_epoch (in place)",
            ".npy (samples x epochs), memory-mapped", "header and size against meta.json (tables.check_array_file)",
            "per-epoch loss, correct, margin, p_given, p_max, eval_loss", locked_writer=True),
    RunFile(PROBABILITIES, "RunStore.write_epoch, RunStore.finish", ".npy float32 (samples x classes)",
            "shape against meta.json", "mean softmax per sample (the suggested label)", locked_writer=True),
    RunFile(EMBEDDINGS, "RunStore.finish (trainer, RunWriter)", ".npy float32 (samples x features)",
            "shape and dtype on reading", "penultimate-layer features after training (kNN score, duplicates)",
            locked_writer=True),
    RunFile(IMAGES, "RunWriter, import", ".npy uint8 (samples x H x W x C)", "shape and dtype on reading",
            "the images of a run written from an in-memory array", locked_writer=True),
    RunFile(CHECKPOINT, "RunStore.save_checkpoint", "torch.save, read with weights_only=True",
            "size and SHA-256 in meta.json (this and the previous one)", "model, optimiser, schedule, tracker",
            locked_writer=True),
    RunFile(REPORT, "RunStore.create, write_epoch, update_report, finish", "JSON", "whole JSON",
            "skipped inputs, per-epoch timings, test accuracy"),
    RunFile(KEPT_SCORES_FILE, "KeptResults.scores (completed runs)", "Parquet",
            "named after the finished epochs and the score table's version; unreadable: computed again",
            "every score of every sample"),
    RunFile(KEPT_CLASS_LOSS_FILE, "KeptResults.class_mean_loss (completed runs)", ".npy",
            "shape checked; else computed again", "every class's mean loss per epoch"),
    RunFile(KEPT_EVALUATION_FILE, "KeptResults.evaluation (completed runs)", "JSON",
            "unreadable: computed again", "every score's detection metrics against the injected truth"),
    RunFile(NEIGHBOURS, "run.duplicates.neighbour_index", ".npz (no pickle)",
            "stamped with the embeddings' size and time, k and the sample count; indices range-checked",
            "nearest pictures by aligned fingerprints (duplicates; `aligned` says whether the fine fingerprints "
            "were used), the crop tier's pairs (`crop_tier`, `crops_skipped`) and nearest embeddings (focus "
            "page), content hashes"),
    RunFile(FINGERPRINTS, "run.duplicates.write_fingerprints (trainer, when a run is made), image_fingerprints",
            ".npz (no pickle)", "row count, dtypes and finite values; else computed again from the images (a file "
            "without `fine`, from before it existed, gets it added)",
            "each image's content hash, 8 x 8 thumbnail and 16 x 16 grey fine fingerprint (near-duplicates)"),
    RunFile(DECISIONS, "run.decisions.DecisionLog", "SQLite (WAL), append-only", "schema version",
            "the person's keep / relabel / drop / undo decisions"),
    RunFile(LOCK, "run.folders.run_lock, RunWriter", "flock'd JSON (pid, host, owner)", "-",
            "held while a process trains the run"),
    RunFile(f"{EXPORT}/", "run.export, run.interop", "CSV, ImageFolder tree of links, cleanlab, FiftyOne",
            "the tree's .csl-export manifest (kind and inode of every entry it wrote)",
            "the cleaned labels and files for other tools"),
    RunFile(MEMORIZATION_SETTINGS, "MemorizationFolder.begin", "JSON", "format and every setting on resuming",
            "fraction, seed and training recipe of the subset models (fixed once started)"),
    RunFile(MEMORIZATION_MODEL, "MemorizationFolder.save_model", ".npz (no pickle)",
            "names, shapes, dtypes and ranges; a damaged one is trained again",
            "one finished subset model: its training subset and its result on every sample"),
    RunFile(MEMORIZATION_ESTIMATE, "MemorizationFolder.write_estimate", "Parquet", "row count and column",
            "every sample's memorisation estimate, from all finished models"),
    RunFile(MEMORIZATION_COMPARISON, "MemorizationFolder.write_comparison", "JSON", "whole JSON",
            "every score of the run against the estimate, the estimator's noise, the cost"),
    RunFile(MEMORIZATION_LOG, "MemorizationFolder.append_log", "JSON", "unreadable: started again",
            "each invocation: models trained, workers, wall time"),
    RunFile(MEMORIZATION_LOCK, "MemorizationFolder.lock", "flock'd JSON (pid, host, owner)", "-",
            "held while subset models are trained"),
    RunFile(f"{MEMORIZATION}/.job-<pid>.<random>.npz", "engine.memorization (parallel workers)", ".npz (no pickle)",
            "-", "the arrays handed to the worker processes; removed when the estimate ends"),
)}


KIB, MIB = 1 << 10, 1 << 20
_HEADER = 64 * KIB   # room for a .npy header


def _n(meta: dict) -> int:
    return max(int(meta.get("num_samples", 0) or 0), 0)


def _k(meta: dict) -> int:
    return len(meta.get("classes") or ())


def _epochs(meta: dict) -> int:
    return max(int(meta.get("epochs", 0) or 0), int(meta.get("finished_epochs", 0) or 0))


#: The most bytes each file of :data:`RUN_FILES` may hold for a run of a given ``meta.json``: every reader
#: opens a file through :func:`csl_core.run.files.open_checked` with this bound, so a file larger than any
#: run writes there is refused unread. ``None``: bounded another way (an array's size against its header and
#: meta.json, a checkpoint's recorded size, the decision log's pages read by SQLite), and still opened only
#: when it is a regular file.
MAX_BYTES: dict[str, Callable[[dict], int | None]] = {
    META: lambda meta: 16 * MIB,
    SAMPLES: lambda meta: MIB + _n(meta) * 16 * KIB,   # a path of 4,096 characters and more per row
    f"{ARRAYS}/<field>.npy": lambda meta: _HEADER + _n(meta) * _epochs(meta) * 8,
    PROBABILITIES: lambda meta: _HEADER + _n(meta) * _k(meta) * 8,
    EMBEDDINGS: lambda meta: None,
    IMAGES: lambda meta: None,
    CHECKPOINT: lambda meta: None,
    REPORT: lambda meta: 64 * MIB,
    KEPT_SCORES_FILE: lambda meta: MIB + _n(meta) * 4 * KIB,
    KEPT_CLASS_LOSS_FILE: lambda meta: _HEADER + _k(meta) * _epochs(meta) * 8,
    KEPT_EVALUATION_FILE: lambda meta: 64 * MIB,
    NEIGHBOURS: lambda meta: MIB + _n(meta) * 4 * KIB,
    FINGERPRINTS: lambda meta: MIB + _n(meta) * 4 * KIB,
    DECISIONS: lambda meta: None,
    LOCK: lambda meta: 64 * KIB,
    f"{EXPORT}/": lambda meta: None,
    MEMORIZATION_SETTINGS: lambda meta: MIB,
    MEMORIZATION_MODEL: lambda meta: MIB + _n(meta) * 16,
    MEMORIZATION_ESTIMATE: lambda meta: MIB + _n(meta) * 4 * KIB,
    MEMORIZATION_COMPARISON: lambda meta: 64 * MIB,
    MEMORIZATION_LOG: lambda meta: 64 * MIB,
    MEMORIZATION_LOCK: lambda meta: 64 * KIB,
    f"{MEMORIZATION}/.job-<pid>.<random>.npz": lambda meta: None,
}


def max_bytes(name: str, meta: dict) -> int | None:
    """The most bytes the run file ``name`` (a key of :data:`RUN_FILES`) may hold for a run of ``meta``."""
    return MAX_BYTES[name](meta)


def file_glob(name: str) -> str:
    """A :data:`RUN_FILES` name as a glob: each ``<part that varies>`` becomes ``*``."""
    return re.sub(r"<[^>]+>", "*", name)


def memorization_model_name(model: int) -> str:
    """The path of subset model ``model``'s file inside a run folder (:data:`MEMORIZATION_MODEL`)."""
    return MEMORIZATION_MODEL.replace("<model>", f"{int(model):05d}")


def memorization_job_name(pid: int) -> str:
    """The name (before the random part) of the file that hands process ``pid``'s arrays to its workers."""
    return f"{MEMORIZATION}/job-{int(pid)}"


def kept_name(kind: str, finished_epochs: int, suffix: str, score_set: str | None = None) -> str:
    """The file a completed run keeps derived data of ``kind`` in (:data:`KEPT_SCORES`, ...): named after the
    finished epochs and, for what depends on the score table, its version ``score_set``."""
    return f"{kind}-{int(finished_epochs):04d}{f'-{score_set}' if score_set else ''}.{suffix}"


def array_name(field: str) -> str:
    """The path of per-epoch array ``field`` inside a run folder."""
    return f"{ARRAYS}/{field}.npy"
