"""The SQLite index of a runs directory: schema, migrations and the queries the store reads with.

``index.sqlite`` holds one row per run (table ``runs``) and its tags (``run_tags``). It holds
nothing that the run directories do not: `lba_cli.runs.RunStore` writes a run's row whenever
the run's status changes, and rebuilds the whole index from the directories on
``lba runs reindex`` (or when the file is missing). Reads (resolving a reference, listing,
filtering) go through the index; the directories are scanned only when a reference is not
found in it.

Migrations are functions named ``mNNN_what``, applied in order on open, each in one
transaction together with its row in ``_migrations``; a new one is appended to `MIGRATIONS`
and never edited once released.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lba_cli.errors import StoreError

__all__ = ["INDEX_NAME", "MIGRATIONS", "connect", "upsert_row", "find_runs", "select_rows", "RUN_COLUMNS"]

INDEX_NAME = "index.sqlite"
RUN_COLUMNS = ("id", "kind", "name", "status", "created_at", "started_at", "finished_at", "heartbeat_at", "parent_id",
               "config_json", "best_epoch", "metrics_json", "host", "pid", "problem")


def m001_create_runs(db: sqlite3.Connection) -> None:
    """The runs table, with indexes on name and kind."""
    db.execute("""
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            heartbeat_at TEXT,
            parent_id TEXT,
            config_json TEXT NOT NULL,
            best_epoch INTEGER,
            metrics_json TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX runs_name ON runs(name)")
    db.execute("CREATE INDEX runs_kind ON runs(kind)")


def m002_add_tags(db: sqlite3.Connection) -> None:
    """Tags of runs, deleted with their run."""
    db.execute("""
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        )""")
    db.execute("CREATE INDEX run_tags_tag ON run_tags(tag)")


def m003_add_process(db: sqlite3.Connection) -> None:
    """The host and pid of the process training a run (crash detection)."""
    db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")


def m004_add_problem(db: sqlite3.Connection) -> None:
    """What is wrong with a damaged run's files (NULL for a healthy run)."""
    db.execute("ALTER TABLE runs ADD COLUMN problem TEXT")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (m001_create_runs, m002_add_tags, m003_add_process,
                                                                m004_add_problem)


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations not yet recorded, each in one transaction with its record."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for migration in MIGRATIONS:
        name = migration.__name__
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:  # another process?
                migration(db)
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                           (name, datetime.now(UTC).isoformat(timespec="seconds")))
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise


@contextmanager
def connect(root: Path) -> Iterator[sqlite3.Connection]:
    """Open (creating and migrating as needed) the index of the runs directory ``root``.

    The connection is in autocommit mode, WAL journal, foreign keys on, rows as
    ``sqlite3.Row``.

    Raises:
        StoreError: if the file is not a readable SQLite index (``lba runs reindex`` fixes it).
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(root / INDEX_NAME, timeout=30.0, isolation_level=None)
    except (OSError, sqlite3.Error) as error:
        what = f"{root} is not a folder" if root.exists() and not root.is_dir() else (
            f"cannot open the run index {root / INDEX_NAME} ({getattr(error, 'strerror', None) or error})")
        raise StoreError(f"{what}\nexpected: a runs directory (--runs-dir DIR or LBA_RUNS_DIR)") from None
    connection.row_factory = sqlite3.Row
    try:
        try:
            connection.execute("PRAGMA busy_timeout = 30000")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA foreign_keys = ON")
            _migrate(connection)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"the run index {root / INDEX_NAME} is unreadable ({error})\n"
                             "expected: a SQLite file; `lba runs reindex` sets it aside and rebuilds it "
                             "from the run directories") from None
        yield connection
    finally:
        connection.close()


def upsert_row(db: sqlite3.Connection, row: dict[str, Any], tags: list[str]) -> None:
    """Insert or replace one run's row (columns `RUN_COLUMNS`) and its tags."""
    columns = ", ".join(RUN_COLUMNS)
    marks = ", ".join("?" for _ in RUN_COLUMNS)
    updates = ", ".join(f"{c}=excluded.{c}" for c in RUN_COLUMNS[1:])
    db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
               tuple(row.get(c) for c in RUN_COLUMNS))
    db.execute("DELETE FROM run_tags WHERE run_id = ?", (row["id"],))
    db.executemany("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)", [(row["id"], tag) for tag in sorted(set(tags))])


def find_runs(db: sqlite3.Connection, ref: str) -> list[sqlite3.Row]:
    """Rows whose id is ``ref``; else whose id starts with it; else whose name is it (oldest first)."""
    for where, args in (("id = ?", (ref,)), ("substr(id, 1, ?) = ?", (len(ref), ref)), ("name = ?", (ref,))):
        rows = db.execute(f"SELECT id, kind, name FROM runs WHERE {where} ORDER BY id", args).fetchall()
        if rows:
            return rows
    return []


def select_rows(db: sqlite3.Connection, *, kind: str | None = None, name_contains: str | None = None,
                tags: list[str] | tuple[str, ...] = (), statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Index rows, oldest first, filtered in SQL; each with its ``tags`` as a sorted list.

    Args:
        kind: only runs of this kind.
        name_contains: only runs whose name contains this text.
        tags: only runs that carry every one of these tags.
        statuses: only runs whose recorded status is one of these.
    """
    where, args = [], []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if name_contains:
        where.append("instr(coalesce(name, ''), ?) > 0")
        args.append(name_contains)
    for tag in dict.fromkeys(tags):
        where.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag = ?)")
        args.append(tag)
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        args.extend(statuses)
    sql = ("SELECT runs.*, (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM run_tags WHERE run_id = runs.id "
           "ORDER BY tag)) AS tag_list FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
    rows = []
    for row in db.execute(sql, args):
        values = dict(row)
        tag_list = values.pop("tag_list")
        values["tags"] = tag_list.split("\x1f") if tag_list else []
        rows.append(values)
    return rows
