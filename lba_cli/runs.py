"""The run store: one directory per run, and a SQLite index over them.

Layout of a runs directory (``./runs``, ``--runs-dir`` or ``LBA_RUNS_DIR``):

    index.sqlite                  the index (WAL mode); rebuilt by `RunStore.reindex`
    <run_id>/config.json          resolved config + lba version + git SHA; written once
    <run_id>/status.json          status, times, heartbeat, best epoch, summary metrics
    <run_id>/metrics.parquet      one row per epoch: epoch, step, elapsed_s, train/*, val/*
    <run_id>/predictions_<split>.parquet   id, affinity_pk, predicted_pk
    <run_id>/checkpoints/{best,last}.pt
    <run_id>/log.txt              human-readable log

Invariants. The directories are the truth: the index holds nothing that cannot be rebuilt
from them. Every file is written to a temporary name and renamed, so a reader never sees a
half-written file. Run ids (``YYYYMMDD-HHMMSS-xxxx``, UTC) sort by creation time to the
millisecond and end in random bits; creating the directory is the lock, so two processes
never take the same id. Only the process that created a run writes
into its directory; any process may write the index (SQLite serialises them). A run whose
status is ``running`` but whose heartbeat is older than `STALE_AFTER_S` is reported as
``crashed``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from lba_cli.errors import RunNotFoundError, StoreError

__all__ = ["RunStore", "Run", "new_group_id", "INDEX_NAME", "STALE_AFTER_S", "MIGRATIONS", "default_runs_dir", "utc_now"]

INDEX_NAME = "index.sqlite"
STALE_AFTER_S = 600.0
CONFIG_NAME = "config.json"
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.parquet"

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_create_runs", """
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
        );
        CREATE INDEX runs_name ON runs(name);
        CREATE INDEX runs_kind ON runs(kind);
    """),
    ("m002_add_tags", """
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        );
        CREATE INDEX run_tags_tag ON run_tags(tag);
    """),
    ("m003_add_process", """
        ALTER TABLE runs ADD COLUMN host TEXT;
        ALTER TABLE runs ADD COLUMN pid INTEGER
    """),
]


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_runs_dir() -> Path:
    """``$LBA_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("LBA_RUNS_DIR") or "runs")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_group_id() -> str:
    """An id for a group of sibling runs (replicates, a sweep), in the run-id format."""
    return _new_run_id()


def _new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: the 4 hex digits are milliseconds * 64 + 6 random bits, so
    ids sort by creation time to the millisecond and rarely collide (a collision retries)."""
    now = datetime.now(timezone.utc)
    suffix = (now.microsecond // 1000) * 64 + secrets.randbelow(64)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{suffix:04x}"


@dataclass
class Run:
    """A handle on one run directory.

    Attributes:
        id: the run id.
        path: the run directory.
        store: the store it belongs to.
    """

    id: str
    path: Path
    store: "RunStore"

    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved configuration (``config.json``)."""
        return json.loads((self.path / CONFIG_NAME).read_text())

    @property
    def status(self) -> dict[str, Any]:
        """``status.json``, with ``status`` turned to ``crashed`` when the heartbeat is stale."""
        status = json.loads((self.path / STATUS_NAME).read_text())
        status["status"] = _effective_status(status)
        return status

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def name(self) -> str | None:
        return self.config.get("name")

    def checkpoint_path(self, which: str) -> Path:
        """``checkpoints/<which>.pt`` (``best`` or ``last``)."""
        return self.path / "checkpoints" / f"{which}.pt"

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``status.json`` (atomically) and update the index row."""
        status = json.loads((self.path / STATUS_NAME).read_text())
        status.update(fields)
        _write_atomic(self.path / STATUS_NAME, json.dumps(status, indent=2, sort_keys=True))
        self.store._upsert(self)
        return status

    def heartbeat(self) -> None:
        """Record that the training process is alive."""
        self.update_status(heartbeat_at=utc_now())

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.parquet`` with ``rows`` (one dict per epoch), atomically."""
        tmp = self.path / f".{METRICS_NAME}.{os.getpid()}.tmp"
        pl.DataFrame(rows).write_parquet(tmp)
        os.replace(tmp, self.path / METRICS_NAME)

    def read_metrics(self) -> pl.DataFrame:
        """The per-epoch metrics (empty frame if none yet)."""
        path = self.path / METRICS_NAME
        return pl.read_parquet(path) if path.exists() else pl.DataFrame()

    def write_predictions(self, split: str, frame: pl.DataFrame) -> Path:
        """Write ``predictions_<split>.parquet`` atomically and return its path."""
        path = self.path / f"predictions_{split}.parquet"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
        return path

    def read_predictions(self, split: str) -> pl.DataFrame:
        """``predictions_<split>.parquet``.

        Raises:
            StoreError: if the run has none for that split.
        """
        path = self.path / f"predictions_{split}.parquet"
        if not path.exists():
            raise StoreError(f"run {self.id} has no {split} predictions\nexpected: run `lba evaluate {self.id} --split {split}` first")
        return pl.read_parquet(path)

    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt``."""
        with open(self.path / "log.txt", "a") as handle:
            handle.write(f"{utc_now()} {message}\n")


def _effective_status(status: dict[str, Any]) -> str:
    """``running`` becomes ``crashed`` when the training process is gone: on this host, its pid
    no longer exists; anywhere, its heartbeat is older than `STALE_AFTER_S`."""
    if status.get("status") != "running":
        return status.get("status", "unknown")
    if status.get("host") == socket.gethostname() and status.get("pid") and not _pid_alive(int(status["pid"])):
        return "crashed"
    beat = status.get("heartbeat_at") or status.get("started_at")
    if beat is None:
        return "running"
    age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
    return "crashed" if age > STALE_AFTER_S else "running"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunStore:
    """Run directories under ``root`` plus their SQLite index.

    Args:
        root: the runs directory; created on first write.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    # ------------------------------------------------------------------ index
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.root / INDEX_NAME, timeout=30.0, isolation_level=None)
        try:
            try:
                connection.execute("PRAGMA busy_timeout = 30000")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA foreign_keys = ON")
                _migrate(connection)
            except sqlite3.DatabaseError as error:
                raise StoreError(f"the run index {self.root / INDEX_NAME} is unreadable ({error})\n"
                                 "expected: a SQLite file; `lba runs reindex` sets it aside and rebuilds it "
                                 "from the run directories") from None
            yield connection
        finally:
            connection.close()

    def _upsert(self, run: Run) -> None:
        config = run.config
        status = json.loads((run.path / STATUS_NAME).read_text())
        row = (
            run.id, config["kind"], config.get("name"), status.get("status", "unknown"), status["created_at"],
            status.get("started_at"), status.get("finished_at"), status.get("heartbeat_at"), status.get("parent_id"),
            json.dumps(config, sort_keys=True), status.get("best_epoch"),
            json.dumps(status.get("metrics", {}), sort_keys=True), status.get("host"), status.get("pid"),
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, kind, name, status, created_at, started_at, finished_at, heartbeat_at, "
                "parent_id, config_json, best_epoch, metrics_json, host, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, name=excluded.name, status=excluded.status, "
                "created_at=excluded.created_at, started_at=excluded.started_at, finished_at=excluded.finished_at, "
                "heartbeat_at=excluded.heartbeat_at, parent_id=excluded.parent_id, config_json=excluded.config_json, "
                "best_epoch=excluded.best_epoch, metrics_json=excluded.metrics_json, host=excluded.host, pid=excluded.pid",
                row,
            )
            db.execute("DELETE FROM run_tags WHERE run_id = ?", (run.id,))
            db.executemany("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)",
                           [(run.id, str(tag)) for tag in sorted(set(status.get("tags", [])))])

    # ------------------------------------------------------------------- runs
    def create_run(self, config: dict[str, Any], parent_id: str | None = None) -> Run:
        """Create a run directory with its config and a ``created`` status, and index it.

        Args:
            config: the resolved run configuration as plain JSON values (``kind`` required).
            parent_id: the pre-training run a fine-tuning run starts from.
        """
        from lba_cli import __version__

        for _ in range(20):
            run_id = _new_run_id()
            path = self.root / run_id
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 20 collisions of a random suffix in one second
            raise StoreError(f"could not create a new run directory in {self.root}")
        (path / "checkpoints").mkdir()
        full = {**config, "lba_version": __version__, "git_sha": _git_sha()}
        _write_atomic(path / CONFIG_NAME, json.dumps(full, indent=2, sort_keys=True))
        status = {"status": "created", "created_at": utc_now(), "parent_id": parent_id, "host": socket.gethostname(),
                  "pid": os.getpid(), "metrics": {}}
        _write_atomic(path / STATUS_NAME, json.dumps(status, indent=2, sort_keys=True))
        run = Run(run_id, path, self)
        self._upsert(run)
        return run

    def _run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file()
                      and (p / STATUS_NAME).is_file())

    def runs(self) -> list[Run]:
        """Every run in the store, oldest first (by id)."""
        return [Run(p.name, p, self) for p in self._run_dirs()]

    def resolve(self, ref: str, kind: str | None = None) -> Run:
        """Find a run by id, unique id prefix, name, or directory path.

        Args:
            ref: the reference.
            kind: when several runs match, prefer the one of this kind (e.g. ``--init NAME``
                looks for a pre-training run).

        Raises:
            RunNotFoundError: naming the candidates when the reference is ambiguous.
        """
        as_path = Path(ref)
        if (as_path / CONFIG_NAME).is_file() and (as_path / STATUS_NAME).is_file():
            store = self if as_path.resolve().parent == self.root.resolve() else RunStore(as_path.resolve().parent)
            return Run(as_path.resolve().name, as_path.resolve(), store)
        runs = self.runs()
        exact = [r for r in runs if r.id == ref]
        if exact:
            return exact[0]
        matches = [r for r in runs if r.id.startswith(ref)] or [r for r in runs if r.name == ref]
        if len(matches) > 1 and kind is not None:
            matches = [r for r in matches if r.kind == kind] or matches
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFoundError(f"no run matches {ref!r} in {self.root}\n"
                                   "expected: a run id, a unique prefix of one, a run name or a run directory "
                                   "(see `lba runs list`)")
        listed = "\n  ".join(f"{r.id}  {r.name or ''}" for r in matches[:10])
        raise RunNotFoundError(f"{ref!r} matches {len(matches)} runs; give more of the id:\n  {listed}")

    def remove(self, run: Run) -> None:
        """Delete a run directory and its index row (and tags)."""
        shutil.rmtree(run.path)
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run.id,))

    def tag(self, run: Run, add: list[str] = (), remove: list[str] = ()) -> list[str]:
        """Add and remove tags of a run; returns its tags, sorted."""
        tags = sorted((set(run.status.get("tags", [])) | set(add)) - set(remove))
        run.update_status(tags=tags)
        return tags

    def reindex(self) -> int:
        """Rebuild the index from the run directories; returns the number of runs indexed.

        An unreadable index file is renamed ``index.sqlite.broken-<time>`` and a new one made.
        """
        runs = self.runs()
        try:
            with self._connect() as db:
                db.execute("DELETE FROM runs")
        except StoreError:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                broken = self.root / f"{INDEX_NAME}{suffix}"
                if broken.exists():
                    broken.rename(self.root / f"{INDEX_NAME}{suffix}.broken-{stamp}")
        for run in runs:
            self._upsert(run)
        return len(runs)

    def _sync(self, db: sqlite3.Connection) -> list[str]:
        """Drop index rows whose directory is gone; return the ids of directories not indexed."""
        indexed = {row[0] for row in db.execute("SELECT id FROM runs")}
        on_disk = {p.name: p for p in self._run_dirs()}
        for vanished in indexed - set(on_disk):
            db.execute("DELETE FROM runs WHERE id = ?", (vanished,))
        missing = set(on_disk) - indexed
        return sorted(missing)

    def index_rows(self) -> list[dict[str, Any]]:
        """The index rows, oldest first, with the effective (crash-aware) status.

        The index is first brought in line with the run directories (runs added or deleted
        by hand), so it never lists a run that is not there.
        """
        if not self.root.is_dir():
            return []
        with self._connect() as db:
            missing = self._sync(db)
        for run_id in missing:
            self._upsert(Run(run_id, self.root / run_id, self))
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
            tags: dict[str, list[str]] = {}
            for run_id, tag in db.execute("SELECT run_id, tag FROM run_tags ORDER BY tag"):
                tags.setdefault(run_id, []).append(tag)
        for row in rows:
            row["status"] = _effective_status(row)
            row["tags"] = tags.get(row["id"], [])
        return rows


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the named migrations not yet recorded, each in one transaction with its record."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, utc_now()))
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise
