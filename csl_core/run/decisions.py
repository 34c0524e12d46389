"""The person's decisions: an append-only log in the run's ``decisions.sqlite``.

Every click is appended as a *batch*: one or several actions (keep, relabel, drop, not-duplicate),
each on one or many samples (:meth:`DecisionLog.record_batch`; "keep this one, drop the rest" is one
batch). An undo is appended too, as a batch that names the batch it cancels, so a click is undone
whole. Nothing is ever updated or deleted, so the full history survives and the effective state of a
sample is derived: the last action on it among the batches that have not been undone.

SQLite in WAL mode lets any number of readers work while one writer appends, from several threads or
processes (two browser tabs, a CLI); ``busy_timeout`` makes a second writer wait instead of failing.
Training never touches this file, so a decision never waits on a running job.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DecisionsChanged, InputError
from .errors import RunError
from .layout import DECISIONS, META
from .logfile import (  # noqa: F401  (SCHEMA_VERSION, log_problem: importers take them from here)
    BUSY_TIMEOUT_MS,
    SCHEMA_VERSION,
    changed_since,
    connect,
    damaged,
    file_key,
    is_busy,
    log_problem,
    migrate,
    refuse_links,
)
from .tables import read_meta

#: Actions that change what the export does with a sample.
EFFECTIVE_ACTIONS = ("keep", "relabel", "drop")
#: Every action ``record`` accepts; ``not-duplicate`` is informational (read by the duplicates page).
ACTIONS = (*EFFECTIVE_ACTIONS, "not-duplicate")
UNDECIDED = "undecided"
_ROW_ACTION = "COALESCE(d.action, b.action)"

# The decision files whose schema this process has set up, by (path, device, inode): a DecisionLog is
# made on every rerun of every page, and the set-up is a write transaction.
_set_up: set[tuple[str, int, int]] = set()
_set_up_lock = threading.Lock()


@dataclass(frozen=True)
class Decision:
    """One action on some samples: a part of a batch (see :meth:`DecisionLog.record_batch`).

    ``label`` is required for ``relabel``: one class index for all samples, or one per sample
    (accepting each sample's suggested label); the other actions ignore it.
    """

    indices: Iterable[int]
    action: str
    label: int | Sequence[int] | None = None


class DecisionLog:
    """The decision log of the run folder ``run_path`` (created on first use).

    Each call opens its own short-lived connection, so one ``DecisionLog`` may be shared between
    threads and any number of them may point at the same file. Reading never writes: the file is created
    by the first decision, and ``read_only`` (a run shown read-only) opens it for reading only and refuses
    decisions. The file (and its ``-wal``, ``-shm``, ``-journal``) is never opened through a symbolic link.
    """

    def __init__(self, run_path: str | Path, *, read_only: bool = False):
        self.run_path = Path(run_path)
        if not self.run_path.is_dir():
            raise FileNotFoundError(f"{self.run_path} is not a run folder; train one first")
        self.path = self.run_path / DECISIONS
        # a folder this process cannot write is read, never written (SQLite would fail on its WAL files)
        self.read_only = read_only or not os.access(self.run_path, os.W_OK)
        self.num_samples, self.num_classes = _run_size(self.run_path)
        self._refuse_links()

    # ------------------------------------------------------------ writing
    def record(self, indices: Iterable[int], action: str, *, label: int | Sequence[int] | None = None,
               source: str = "", note: str = "", tab: str = "", computed_at: int | None = None) -> int:
        """Append one batch: ``action`` on every sample in ``indices``; returns the batch id.

        ``label`` is required for ``relabel``: one class index for all samples, or one per sample
        (accepting each sample's suggested label). It is ignored by the other actions. ``tab`` names
        the browser tab (dashboard session) that made the batch, so that its undo stays in that tab;
        ``computed_at``: see :meth:`record_batch`.
        """
        return self.record_batch([Decision(indices, action, label)], source=source, note=note, tab=tab,
                                 computed_at=computed_at)

    def record_batch(self, decisions: Sequence[Decision], *, source: str = "", note: str = "", tab: str = "",
                     computed_at: int | None = None) -> int:
        """Append several actions as one batch (one click), undone together; returns the batch id.

        Where two decisions name the same sample, the later one is its effective action. Every
        decision is checked before anything is written: a bad one leaves the log unchanged.
        ``computed_at``, the :meth:`revision` a bulk action was computed from (a suggested cleaning, ticks on
        a page), makes it conditional: in the transaction that would append it, a batch recorded since that
        decides on (or undoes a decision on) any of its samples refuses it with :class:`DecisionsChanged`.
        """
        if not decisions:
            raise InputError("no decisions given: a batch needs at least one action")
        rows: list[tuple[int, int | None, str]] = []
        for decision in decisions:
            samples, labels = self._check(decision)
            rows += [(s, lab, decision.action) for s, lab in zip(samples.tolist(), labels)]
        actions = list(dict.fromkeys(d.action for d in decisions))
        with self._write() as db:
            changed = None if computed_at is None else changed_since(db, int(computed_at), (r[0] for r in rows))
            if changed is not None:
                raise DecisionsChanged(
                    f"nothing was applied: the decisions changed since this was computed (batch {changed[0]} is "
                    "newer" + (f" and decides on sample {changed[1]}" if changed[1] is not None else "") +
                    ", from another tab or an undo). Look at it again as it is now, and apply it again if you want")
            cursor = db.execute("INSERT INTO batches(action, source, note, created, tab) VALUES (?, ?, ?, ?, ?)",
                                ("+".join(actions), source, note, time.time(), str(tab)))
            batch = int(cursor.lastrowid)
            db.executemany("INSERT INTO decisions(batch, sample, label, action) VALUES (?, ?, ?, ?)",
                           [(batch, sample, lab, action) for sample, lab, action in rows])
        return batch

    def _check(self, decision: Decision) -> tuple[np.ndarray, list[int | None]]:
        """The samples of ``decision`` and the label each gets (``None`` unless relabeled), validated."""
        action, label = decision.action, decision.label
        if action not in ACTIONS:
            raise InputError(f"unknown action {action!r}; known actions: {', '.join(ACTIONS)}")
        samples = self._check_indices(decision.indices)
        if action != "relabel":
            return samples, [None] * len(samples)
        if label is None:
            raise InputError("relabel needs a label (a class index, or one per sample)")
        labels = np.broadcast_to(np.asarray(label, dtype=np.int64), samples.shape).copy() \
            if np.ndim(label) == 0 else np.asarray(label, dtype=np.int64)
        if labels.shape != samples.shape:
            raise InputError(f"relabel got {len(labels)} labels for {len(samples)} samples")
        if len(labels) and (labels.min() < 0 or (self.num_classes and labels.max() >= self.num_classes)):
            raise InputError(f"labels must be class indices in [0, {self.num_classes}); got "
                             f"{labels.min()}..{labels.max()}")
        return samples, labels.tolist()

    def undo(self, batch: int | None = None, *, source: str | None = None, tab: str | None = None) -> int | None:
        """Cancel ``batch`` (default: the last batch not yet undone, from ``source`` and made in ``tab``
        where given, so that one browser tab never undoes another tab's batch).

        The undo is appended as its own row; returns the id of the batch undone, or ``None`` when
        there was nothing to undo.
        """
        with self._write() as db:
            if batch is None:
                query = ("SELECT id FROM batches WHERE action != 'undo' "
                         "AND id NOT IN (SELECT undoes FROM batches WHERE undoes IS NOT NULL)")
                params: tuple = ()
                if source is not None:
                    query += " AND source = ?"
                    params = (source,)
                if tab is not None:
                    query += " AND tab = ?"
                    params = (*params, str(tab))
                row = db.execute(query + " ORDER BY id DESC LIMIT 1", params).fetchone()
                if row is None:
                    return None
                batch = int(row[0])
            else:
                row = db.execute("SELECT action FROM batches WHERE id = ?", (batch,)).fetchone()
                if row is None:
                    raise InputError(f"no decision batch {batch} in {self.path}")
                if row[0] == "undo":
                    raise InputError(f"batch {batch} is itself an undo; record the action again instead")
                if db.execute("SELECT 1 FROM batches WHERE undoes = ?", (batch,)).fetchone():
                    return None
            db.execute("INSERT INTO batches(action, source, note, created, undoes, tab) "
                       "VALUES ('undo', ?, '', ?, ?, ?)", (source or "", time.time(), batch, str(tab or "")))
        return batch

    # ------------------------------------------------------------ reading
    def revision(self) -> int:
        """The id of the newest batch (0 when empty): a cheap key for caching derived state."""
        with self._read() as db:
            row = db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()
        return int(row[0])

    def history(self) -> pd.DataFrame:
        """Every logged row, oldest first: one per (batch, sample), and one per undo (``sample`` NA).

        Columns: ``batch, action, sample, label, source, note, decided_at, undoes, undone``.
        """
        with self._read() as db:
            frame = pd.read_sql_query(
                f"SELECT b.id AS batch, {_ROW_ACTION} AS action, d.sample, d.label, b.source, b.note, "
                "b.created AS decided_at, "
                "b.undoes, EXISTS(SELECT 1 FROM batches u WHERE u.undoes = b.id) AS undone "
                "FROM batches b LEFT JOIN decisions d ON d.batch = b.id ORDER BY b.id, d.rowid", db)
        for column in ("sample", "label", "undoes"):
            frame[column] = frame[column].astype("Int64")
        frame["undone"] = frame["undone"].astype(bool)
        frame["decided_at"] = pd.to_datetime(frame["decided_at"], unit="s")
        return frame

    def batch(self, batch: int) -> pd.DataFrame:
        """The decisions of batch ``batch`` in the order recorded: ``sample, label, action`` (``label`` NA
        unless relabeled); empty for an undo or an unknown id."""
        with self._read() as db:
            frame = pd.read_sql_query(f"SELECT d.sample, d.label, {_ROW_ACTION} AS action FROM batches b "
                                      "JOIN decisions d ON d.batch = b.id WHERE b.id = ? ORDER BY d.rowid", db,
                                      params=(int(batch),))
        frame["label"] = frame["label"].astype("Int64")
        return frame

    def batches(self) -> pd.DataFrame:
        """One row per batch: ``batch, action, source, tab, note, decided_at, undoes, undone, samples``; the
        action of a batch of several actions joins them with ``+`` (``drop+keep``)."""
        with self._read() as db:
            frame = pd.read_sql_query(
                "SELECT b.id AS batch, b.action, b.source, b.tab, b.note, b.created AS decided_at, b.undoes, "
                "EXISTS(SELECT 1 FROM batches u WHERE u.undoes = b.id) AS undone, "
                "(SELECT COUNT(*) FROM decisions d WHERE d.batch = b.id) AS samples "
                "FROM batches b ORDER BY b.id", db)
        frame["undoes"] = frame["undoes"].astype("Int64")
        frame["undone"] = frame["undone"].astype(bool)
        frame["decided_at"] = pd.to_datetime(frame["decided_at"], unit="s")
        return frame

    def effective(self, num_samples: int, original_labels: Sequence[int] | np.ndarray) -> pd.DataFrame:
        """The state of every sample: its last action among batches not undone.

        Returns a DataFrame indexed by sample ``0..num_samples-1`` with columns ``action``
        (keep / relabel / drop / undecided), ``label`` (the label the sample ends up with; the
        original unless relabeled), ``decided_at`` (NaT when undecided) and ``source``. A relabel to
        the sample's own label counts as ``keep``.
        """
        original = np.asarray(original_labels, dtype=np.int64)
        if len(original) != num_samples:
            raise InputError(f"{len(original)} original labels for {num_samples} samples")
        placeholders = ", ".join("?" * len(EFFECTIVE_ACTIONS))
        with self._read() as db:
            rows = db.execute(
                f"SELECT d.sample, {_ROW_ACTION}, d.label, b.created, b.source FROM decisions d "
                "JOIN batches b ON b.id = d.batch "
                f"WHERE {_ROW_ACTION} IN ({placeholders}) "
                "AND b.id NOT IN (SELECT undoes FROM batches WHERE undoes IS NOT NULL) "
                "ORDER BY b.id, d.rowid", EFFECTIVE_ACTIONS).fetchall()
        # Categoricals, not a million Python strings: the dashboard rebuilds this on every decision.
        actions = [UNDECIDED, *EFFECTIVE_ACTIONS]
        action = np.zeros(num_samples, dtype=np.int8)  # codes into ``actions``
        label = original.copy()
        decided_at = np.full(num_samples, np.nan)
        sources = [""]  # the source of an undecided sample
        source = np.zeros(num_samples, dtype=np.int32)  # codes into ``sources``
        if rows:
            log = pd.DataFrame(rows, columns=["sample", "action", "label", "created", "source"])
            log = log[(log["sample"] >= 0) & (log["sample"] < num_samples)]
            last = log.drop_duplicates("sample", keep="last")
            where = last["sample"].to_numpy(np.int64)
            acts = last["action"].to_numpy(object)
            new_labels = last["label"].to_numpy(np.float64)
            relabel = acts == "relabel"
            wrong = relabel & ~((new_labels >= 0) & (new_labels < (self.num_classes or np.inf)))   # NaN: NULL
            if wrong.any():
                raise RunError(f"{self.path} is damaged: it relabels sample {int(where[wrong][0])} to "
                               f"{new_labels[wrong][0]!r}, not one of the run's {self.num_classes} classes; move "
                               "the file away (the run's scores stay readable) or restore it from a backup")
            label[where[relabel]] = new_labels[relabel].astype(np.int64)
            same = relabel & (label[where] == original[where])
            acts = np.where(same, "keep", acts)
            action[where] = pd.Categorical(acts, categories=actions).codes
            decided_at[where] = last["created"].to_numpy(np.float64)
            named = last["source"].fillna("").astype(str).to_numpy()
            sources += sorted(set(named) - {""})
            source[where] = pd.Categorical(named, categories=sources).codes
        frame = pd.DataFrame({"action": pd.Categorical.from_codes(action, actions), "label": label,
                              "decided_at": pd.to_datetime(decided_at, unit="s"),
                              "source": pd.Categorical.from_codes(source, sources)},
                             index=pd.RangeIndex(num_samples, name="index"))
        return frame

    # ------------------------------------------------------------ internals
    def _set_up(self) -> None:
        """Set the file up once per process (and again only if it is replaced)."""
        key = file_key(self.path)
        if key is not None and key in _set_up:
            return
        with _set_up_lock:
            self._create()
            key = file_key(self.path)
            if key is not None:
                _set_up.add(key)

    def _create(self) -> None:
        """Create the tables, bring an older log to :data:`SCHEMA_VERSION` and switch the file to WAL
        (all persist in the file).

        SQLite answers "database is locked" at once, without waiting on the busy timeout, when two
        connections set up the same new file together (two tabs opening a run for the first time),
        so this step retries until the timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.005
        while True:
            try:
                with closing(self._connect(write=True)) as db:
                    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        db.execute("PRAGMA journal_mode = WAL")
                    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        migrate(db)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"{self.path}: the decision log stayed locked for {BUSY_TIMEOUT_MS / 1000:.0f} s; "
                        "another process holds it open for writing") from e
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def _refuse_links(self) -> None:
        refuse_links(self.path)

    def _connect(self, *, write: bool = False) -> sqlite3.Connection:
        return connect(self.path, write=write, read_only=self.read_only)

    @contextmanager
    def _read(self):
        """A reading connection; a damaged file is a :class:`RunError` that names it. A log written by an
        older version is brought up to date first (unless read-only)."""
        if not self.read_only and self.path.is_file():
            try:
                self._set_up()
            except sqlite3.DatabaseError as e:
                if is_busy(e):
                    raise
                raise damaged(self.path, e) from None
        with closing(self._connect()) as db:
            try:
                yield db
            except sqlite3.DatabaseError as e:
                if is_busy(e):
                    raise
                raise damaged(self.path, e) from None

    @contextmanager
    def _write(self):
        """One write transaction, taken up front so that concurrent writers queue instead of deadlocking."""
        if self.read_only:
            raise RunError(f"{self.run_path} is open read-only; decisions cannot be recorded here")
        self._set_up()
        with closing(self._connect(write=True)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _check_indices(self, indices: Iterable[int]) -> np.ndarray:
        samples = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if samples.size == 0:
            raise InputError("no samples given: select at least one sample")
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.integer):
            raise InputError("indices must be a flat list of integer sample indices")
        samples = samples.astype(np.int64)
        if samples.min() < 0 or (self.num_samples and samples.max() >= self.num_samples):
            raise InputError(f"sample indices must be in [0, {self.num_samples}); got "
                             f"{samples.min()}..{samples.max()}")
        return samples


def _run_size(run_path: Path) -> tuple[int, int]:
    """(samples, classes) from the run's ``meta.json``; zeros (no range checks) when it has none."""
    try:
        meta = read_meta(run_path / META, check=False)
        return int(meta.get("num_samples", 0)), len(meta.get("classes", []))
    except (OSError, ValueError, RunError):
        return 0, 0


