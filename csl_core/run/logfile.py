"""The decision log's SQLite file: its schema and migrations, connections that never follow a link and
never create the file for a reader, and a cheap check of the file's header (a truncated log is damage)."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from stat import S_ISREG
from urllib.parse import quote

from .errors import RunError
from .files import check_file, open_checked, refuse_link
from .layout import DECISIONS

BUSY_TIMEOUT_MS = 10_000
#: ``PRAGMA user_version`` of the current layout. 1: one action per batch (``batches.action``);
#: 2: the action on every row (``decisions.action``), so that one batch holds several actions;
#: 3: the browser tab that made each batch (``batches.tab``), so that an undo stays in its tab.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    action   TEXT    NOT NULL,            -- keep | relabel | drop | not-duplicate | undo, or e.g. drop+keep
    source   TEXT    NOT NULL DEFAULT '', -- the page (or tool) that made it
    tab      TEXT    NOT NULL DEFAULT '', -- the browser tab (dashboard session) that made it
    note     TEXT    NOT NULL DEFAULT '',
    created  REAL    NOT NULL,            -- unix time
    undoes   INTEGER REFERENCES batches(id)
);
CREATE TABLE IF NOT EXISTS decisions (
    batch    INTEGER NOT NULL REFERENCES batches(id),
    sample   INTEGER NOT NULL,
    label    INTEGER,                     -- the new label (relabel only)
    action   TEXT                         -- keep | relabel | drop | not-duplicate
);
CREATE INDEX IF NOT EXISTS decisions_batch ON decisions(batch);
CREATE INDEX IF NOT EXISTS batches_undoes ON batches(undoes);
"""
# A version-1 log gains the row action, filled from its batch. Readers still fall back to the batch's
# action (COALESCE), so rows appended by an older copy of this code read the same.
_MIGRATE_1_TO_2 = """
ALTER TABLE decisions ADD COLUMN action TEXT;
UPDATE decisions SET action = (SELECT b.action FROM batches b WHERE b.id = decisions.batch) WHERE action IS NULL;
"""


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or add what an older log lacks, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(decisions)")}
        if columns and "action" not in columns:
            for statement in filter(str.strip, _MIGRATE_1_TO_2.split(";")):
                db.execute(statement)
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        _add_tab_column(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def refuse_links(path: Path) -> None:
    """Refuse the log when it, or one of the files SQLite keeps beside it, is a symbolic link."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        refuse_link(Path(f"{path}{suffix}"), "(the decision log of the run)")
        try:
            if not S_ISREG(os.lstat(f"{path}{suffix}").st_mode):
                check_file(Path(f"{path}{suffix}"))   # says what it is: a FIFO would block SQLite forever
        except FileNotFoundError:
            pass   # absent, or SQLite's -journal gone between two looks


def connect(path: Path, *, write: bool, read_only: bool) -> sqlite3.Connection:
    """A connection to the log ``path``; for reading, one to an empty in-memory log while there is no file
    (so that viewing a run creates nothing), and a read-only one when the log is opened read-only."""
    refuse_links(path)
    if not write and not path.is_file():
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        return db
    if write and read_only:
        raise RunError(f"{path.parent} is open read-only; decisions cannot be recorded here")
    try:
        if not write and read_only:
            # Without a write-ahead log to read, the file is opened immutable: SQLite then creates nothing
            # beside it (a read-only open would make an empty -wal and -shm).
            wal = Path(f"{path}-wal")
            uri = f"file:{quote(str(path.resolve()))}"
            try:
                if not (wal.is_file() and wal.stat().st_size):
                    raise sqlite3.OperationalError("no log to read")
                db = _open(f"{uri}?mode=ro")
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:  # nothing to read in the log, or a folder that cannot hold it
                db = _open(f"{uri}?immutable=1")
        else:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as e:
        raise damaged(path, e) from None
    return db


def is_busy(error: Exception) -> bool:
    """Whether ``error`` says another connection holds the file (to wait on), not that it is damaged."""
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def _add_tab_column(db: sqlite3.Connection) -> None:
    """Logs written before batches recorded their tab get the column (empty: made in no known tab)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    if "tab" not in columns:
        try:
            db.execute("ALTER TABLE batches ADD COLUMN tab TEXT NOT NULL DEFAULT ''")
        except sqlite3.OperationalError as e:  # another connection added it a moment ago
            if "duplicate column" not in str(e):
                raise


def _open(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def damaged(path: Path, error: Exception) -> RunError:
    return RunError(f"{path} is damaged ({error}); the decisions cannot be read. Restore it from a backup, or "
                    "move it away to start the decisions over")


def log_problem(run_path: str | Path) -> str | None:
    """What is wrong with the run's decision log, from its header alone (cheap): not an SQLite file, or
    shorter than the pages its header counts (truncated); ``None`` when it looks whole or does not exist."""
    path = Path(run_path) / DECISIONS
    if path.is_symlink():
        return f"{path} is a symbolic link; the decision log is never opened through a link"
    try:
        with open_checked(path) as f:   # a FIFO is said, never waited on
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None
    except RunError as e:
        return str(e)
    except OSError as e:
        return f"{path} cannot be read ({e})"
    if size == 0:
        return None  # an empty file is an empty log to SQLite
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return f"{path} is damaged: it is not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = pages > 0 and header[24:28] == header[92:96]
    if page_size < 512 or (valid and size < pages * page_size):
        return (f"{path} is damaged: {size} bytes, its header promises {pages} pages of {page_size} (truncated); "
                "restore it from a backup, or move it away to start the decisions over")
    return None


def file_key(path: Path) -> tuple[str, int, int] | None:
    """``path`` with its device and inode, or ``None`` when the file does not exist yet."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return str(path.resolve()), stat.st_dev, stat.st_ino


def changed_since(db: sqlite3.Connection, revision: int, samples) -> tuple[int, int | None] | None:
    """``(newest batch, a sample)`` when a batch recorded after batch ``revision`` decides on one of
    ``samples`` or undoes a batch that did (the sample is ``None`` when the log is older than ``revision``:
    replaced), else ``None``. Run inside the write transaction that appends the batch checked."""
    newest = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0])
    if newest == revision:
        return None
    if newest < revision:
        return newest, None
    db.execute("CREATE TEMP TABLE IF NOT EXISTS checked_samples(sample INTEGER PRIMARY KEY)")
    db.execute("DELETE FROM checked_samples")
    db.executemany("INSERT OR IGNORE INTO checked_samples VALUES (?)", ((int(s),) for s in samples))
    row = db.execute("SELECT d.sample FROM decisions d JOIN checked_samples c ON c.sample = d.sample "
                     "WHERE d.batch > ? LIMIT 1", (revision,)).fetchone()
    if row is None:
        row = db.execute("SELECT d.sample FROM batches u JOIN decisions d ON d.batch = u.undoes "
                         "JOIN checked_samples c ON c.sample = d.sample WHERE u.id > ? LIMIT 1",
                         (revision,)).fetchone()
    return None if row is None else (newest, int(row[0]))
