"""The run store: one directory per run, and a SQLite index over them (`lba_cli.runs.index`).

Layout of a runs directory (``./runs``, ``--runs-dir`` or ``LBA_RUNS_DIR``):

    index.sqlite                  the index (WAL mode); rebuilt by `RunStore.reindex`
    <run_id>/config.json          resolved config + lba version + git SHA; written once
    <run_id>/status.json          status, times, heartbeat, best epoch, summary metrics
    <run_id>/metrics.parquet      one row per epoch: epoch, step, elapsed_s, train/*, val/*
    <run_id>/predictions_<split>.parquet   id, affinity_pk, predicted_pk
    <run_id>/checkpoints/{best,last}.pt
    <run_id>/log.txt              human-readable log

Invariants. The directories are the truth: the index holds nothing that cannot be rebuilt
from them, and reads go through the index, which the store brings in line with the
directories when a reference is not found in it (or on ``lba runs reindex``). Every file is
written with `lba_cli.atomic`, so a reader never sees a half-written file. Run ids
(``YYYYMMDD-HHMMSS-xxxx``, UTC) sort by creation time to the millisecond and end in random
bits; creating the directory is the lock, so two processes never take the same id. Only the
process that created a run writes into its directory; any process may write the index
(SQLite serialises them). A run whose status is ``running`` but whose heartbeat is older than
`STALE_AFTER_S` is reported as ``crashed``.

Damaged runs. A run directory whose ``config.json`` or ``status.json`` is missing, empty or
not a JSON object (a full disk, an interrupted copy) is indexed with status ``damaged`` and
the problem in one line (column ``problem``), so that listing shows every healthy run and
names the damaged ones; reading such a run raises `StoreError` naming the file. The row is
set right by the next ``lba runs reindex`` once the file is repaired.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lba_cli.atomic import atomic_path, write_text_atomic
from lba_cli.choices import RunStatus
from lba_cli.errors import RunNotFoundError, StoreError
from lba_cli.runs import index

__all__ = ["RunStore", "Run", "new_group_id", "STALE_AFTER_S", "default_runs_dir", "utc_now", "is_run_dir",
           "looks_like_run_dir", "read_run_json"]

STALE_AFTER_S = 600.0
CONFIG_NAME = "config.json"
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.parquet"

def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_runs_dir() -> Path:
    """``$LBA_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("LBA_RUNS_DIR") or "runs")


def is_run_dir(path: Path) -> bool:
    """True for a folder holding a run's ``config.json`` and ``status.json``."""
    return (path / CONFIG_NAME).is_file() and (path / STATUS_NAME).is_file()


def looks_like_run_dir(path: Path) -> bool:
    """True for a folder holding ``config.json`` or ``status.json`` (a run, maybe damaged)."""
    return (path / CONFIG_NAME).is_file() or (path / STATUS_NAME).is_file()


def read_run_json(path: Path) -> dict[str, Any]:
    """Read a run's ``config.json`` or ``status.json``.

    Raises:
        StoreError: in one line naming the file and what is wrong with it (missing, empty,
            unreadable, not JSON, not a JSON object).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise StoreError(f"cannot read {path}: {reason}") from None
    if not text.strip():
        raise StoreError(f"{path} is empty ({len(text.encode())} bytes)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise StoreError(f"{path} is not valid JSON ({error.msg}; {where})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a JSON object but a {type(data).__name__}")
    return data


def _read_parquet(path: Path) -> pl.DataFrame:
    """A run's Parquet file; StoreError naming it when it is damaged (e.g. cut off by a full disk)."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StoreError(f"{path} is not a readable Parquet file ({first})") from None


# Types of the status.json fields that readers rely on (None is allowed for each).
_STATUS_TYPES: dict[str, type | tuple[type, ...]] = {"status": str, "metrics": dict, "tags": list, "best_epoch": int,
                                                     "epochs_done": int, "pid": int}


def _time_from_id(run_id: str, path: Path) -> str:
    """A run's creation time from its id (``YYYYMMDD-HHMMSS-xxxx``), else its folder's mtime."""
    try:
        return datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC).isoformat(timespec="seconds")
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


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
    now = datetime.now(UTC)
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
    store: RunStore

    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved configuration (``config.json``).

        Raises:
            StoreError: if the file is missing, empty or not a JSON object with a ``kind``.
        """
        config = read_run_json(self.path / CONFIG_NAME)
        if not isinstance(config.get("kind"), str):
            raise StoreError(f"{self.path / CONFIG_NAME} has no run kind (not a config.json written by lba)")
        return config

    @property
    def status(self) -> dict[str, Any]:
        """``status.json``, with ``status`` turned to ``crashed`` when the heartbeat is stale.

        Raises:
            StoreError: if the file is missing, empty or not a JSON object.
        """
        path = self.path / STATUS_NAME
        status = read_run_json(path)
        for key, kind in _STATUS_TYPES.items():
            if status.get(key) is not None and not isinstance(status[key], kind):
                raise StoreError(f"{path}: {key!r} is {status[key]!r}, not a {getattr(kind, '__name__', kind)} (not "
                                 "a status.json written by lba)")
        status["status"] = _effective_status(status)
        return status

    def problem(self) -> str | None:
        """What is wrong with the run's files (one line), or None when both read."""
        try:
            self.config  # noqa: B018 - read to check
            self.status  # noqa: B018
        except StoreError as error:
            return str(error)
        return None

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
        status = read_run_json(self.path / STATUS_NAME)
        status.update(fields)
        write_text_atomic(self.path / STATUS_NAME, json.dumps(status, indent=2, sort_keys=True))
        self.store._upsert(self)
        return status

    def heartbeat(self) -> None:
        """Record that the training process is alive."""
        self.update_status(heartbeat_at=utc_now())

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.parquet`` with ``rows`` (one dict per epoch), atomically."""
        with atomic_path(self.path / METRICS_NAME) as tmp:
            pl.DataFrame(rows).write_parquet(tmp)

    def read_metrics(self) -> pl.DataFrame:
        """The per-epoch metrics (empty frame if none yet).

        Raises:
            StoreError: if the file is there but is not a readable Parquet file.
        """
        path = self.path / METRICS_NAME
        return _read_parquet(path) if path.exists() else pl.DataFrame()

    def write_predictions(self, split: str, frame: pl.DataFrame) -> Path:
        """Write ``predictions_<split>.parquet`` atomically and return its path."""
        path = self.path / f"predictions_{split}.parquet"
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
        return path

    def read_predictions(self, split: str) -> pl.DataFrame:
        """``predictions_<split>.parquet``.

        Raises:
            StoreError: if the run has none for that split.
        """
        path = self.path / f"predictions_{split}.parquet"
        if not path.exists():
            raise StoreError(f"run {self.id} has no {split} predictions\nexpected: run `lba evaluate {self.id} "
                             f"--split {split}` first")
        return _read_parquet(path)

    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt``."""
        with open(self.path / "log.txt", "a") as handle:
            handle.write(f"{utc_now()} {message}\n")


def _effective_status(status: dict[str, Any]) -> str:
    """``running`` becomes ``crashed`` when the training process is gone: on this host, its pid
    no longer exists; anywhere, its heartbeat is older than `STALE_AFTER_S`."""
    if status.get("status") != RunStatus.running:
        return status.get("status", "unknown")
    if status.get("host") == socket.gethostname() and isinstance(status.get("pid"), int) and \
            not _pid_alive(status["pid"]):
        return RunStatus.crashed.value
    beat = status.get("heartbeat_at") or status.get("started_at")
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(beat)).total_seconds()
    except (TypeError, ValueError):  # no heartbeat yet, or not a time
        return RunStatus.running.value
    return RunStatus.crashed.value if age > STALE_AFTER_S else RunStatus.running.value


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

    def _exists(self) -> bool:
        """Whether the runs directory exists yet.

        Raises:
            StoreError: if the path is there but is not a folder.
        """
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is not a folder\n"
                             "expected: a runs directory (--runs-dir DIR or LBA_RUNS_DIR)")
        return self.root.is_dir()

    # ------------------------------------------------------------------ index
    @contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """The open index; a missing index file is rebuilt from the directories first."""
        missing = not (self.root / index.INDEX_NAME).exists()
        with index.connect(self.root) as db:
            if missing:
                self._sync(db)
            yield db

    def _upsert(self, run: Run, db: sqlite3.Connection | None = None) -> None:
        """Write ``run``'s index row from its config.json and status.json."""
        config = run.config
        run.status  # noqa: B018 - checks the file's fields
        status = read_run_json(run.path / STATUS_NAME)
        row = {"id": run.id, "kind": config["kind"], "name": config.get("name"),
               "status": status.get("status", "unknown"), "config_json": json.dumps(config, sort_keys=True),
               "metrics_json": json.dumps(status.get("metrics", {}), sort_keys=True),
               **{key: status.get(key) for key in ("created_at", "started_at", "finished_at", "heartbeat_at",
                                                   "parent_id", "best_epoch", "host", "pid")}, "problem": None}
        row["created_at"] = row["created_at"] or _time_from_id(run.id, run.path)
        tags = [str(tag) for tag in status.get("tags", [])] if isinstance(status.get("tags"), list) else []
        if db is not None:
            index.upsert_row(db, row, tags)
            return
        with self._index() as connection:
            index.upsert_row(connection, row, tags)

    def _sync(self, db: sqlite3.Connection) -> None:
        """Bring the index in line with the directories: drop rows of runs whose directory is
        gone, add runs whose directory is not indexed (copied in, or an index rebuilt)."""
        indexed = {row[0] for row in db.execute("SELECT id FROM runs")}
        on_disk = {p.name for p in self._run_dirs()}
        for vanished in sorted(indexed - on_disk):
            db.execute("DELETE FROM runs WHERE id = ?", (vanished,))
        for run_id in sorted(on_disk - indexed):
            run = Run(run_id, self.root / run_id, self)
            try:
                self._upsert(run, db)
            except StoreError as error:
                index.upsert_row(db, self._damaged_row(run, str(error)), [])

    def _damaged_row(self, run: Run, problem: str) -> dict[str, Any]:
        """The index row of a run whose files cannot be read: what its config still says."""
        try:
            config = run.config
        except StoreError:
            config = {}
        return {"id": run.id, "kind": config.get("kind", "unknown"), "name": config.get("name"),
                "status": RunStatus.damaged.value, "created_at": _time_from_id(run.id, run.path),
                "config_json": json.dumps(config, sort_keys=True), "metrics_json": "{}", "problem": problem}

    def _run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and looks_like_run_dir(p))

    # ------------------------------------------------------------------- runs
    def create_run(self, config: dict[str, Any], parent_id: str | None = None) -> Run:
        """Create a run directory with its config and a ``created`` status, and index it.

        Args:
            config: the resolved run configuration as plain JSON values (``kind`` required).
            parent_id: the pre-training run a fine-tuning run starts from.
        """
        from lba_cli import __version__

        self._exists()
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
        write_text_atomic(path / CONFIG_NAME, json.dumps(full, indent=2, sort_keys=True))
        status = {"status": RunStatus.created.value, "created_at": utc_now(), "parent_id": parent_id,
                  "host": socket.gethostname(), "pid": os.getpid(), "metrics": {}}
        write_text_atomic(path / STATUS_NAME, json.dumps(status, indent=2, sort_keys=True))
        run = Run(run_id, path, self)
        self._upsert(run)
        return run

    def runs(self) -> list[Run]:
        """Every indexed run whose directory is there, oldest first (by id)."""
        return [Run(row["id"], self.root / row["id"], self) for row in self.index_rows()]

    def resolve(self, ref: str, kind: str | None = None) -> Run:
        """Find a run by id, unique id prefix, name, or directory path.

        The index answers; only when it knows no such run (or the run's directory is gone) are
        the directories scanned and the index brought up to date before asking again.

        Args:
            ref: the reference.
            kind: when several runs match, prefer the one of this kind (e.g. ``--init NAME``
                looks for a pre-training run).

        Raises:
            RunNotFoundError: naming the candidates when the reference is ambiguous.
        """
        as_path = Path(ref)
        if is_run_dir(as_path):
            found = as_path.resolve()
            return Run(found.name, found, self if found.parent == self.root.resolve() else RunStore(found.parent))
        if not self._exists():
            matches = []
        else:
            with self._index() as db:
                matches = index.find_runs(db, ref)
                if not matches or not all(looks_like_run_dir(self.root / row["id"]) for row in matches):
                    self._sync(db)  # a miss: the directories may know more than the index
                    matches = index.find_runs(db, ref)
        if len(matches) > 1 and kind is not None:
            matches = [row for row in matches if row["kind"] == kind] or matches
        if len(matches) == 1:
            return Run(matches[0]["id"], self.root / matches[0]["id"], self)
        if not matches:
            raise RunNotFoundError(f"no run matches {ref!r} in {self.root}\n"
                                   "expected: a run id, a unique prefix of one, a run name or a run directory "
                                   "(see `lba runs list`)")
        listed = "\n  ".join(f"{row['id']}  {row['name'] or ''}" for row in matches[:10])
        raise RunNotFoundError(f"{ref!r} matches {len(matches)} runs; give more of the id:\n  {listed}")

    def remove(self, run: Run) -> None:
        """Delete a run directory and its index row (and tags)."""
        shutil.rmtree(run.path)
        with self._index() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run.id,))

    def tag(self, run: Run, add: list[str] = (), remove: list[str] = ()) -> list[str]:
        """Add and remove tags of a run; returns its tags, sorted."""
        tags = sorted((set(run.status.get("tags", [])) | set(add)) - set(remove))
        run.update_status(tags=tags)
        return tags

    def reindex(self) -> int:
        """Rebuild the index from the run directories; returns the number of runs indexed
        (damaged ones included, with status ``damaged``).

        An unreadable index file is renamed ``index.sqlite.broken-<time>`` and a new one made.
        """
        self._exists()
        try:
            with index.connect(self.root) as db:
                db.execute("DELETE FROM runs")
        except StoreError:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                broken = self.root / f"{index.INDEX_NAME}{suffix}"
                if broken.exists():
                    broken.rename(self.root / f"{index.INDEX_NAME}{suffix}.broken-{stamp}")
        with index.connect(self.root) as db:
            self._sync(db)
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def index_rows(self, *, kind: str | None = None, name_contains: str | None = None,
                   tags: list[str] | tuple[str, ...] = (), status: str | None = None) -> list[dict[str, Any]]:
        """Index rows, oldest first, filtered in SQL, with the effective (crash-aware) status.

        A row whose run directory has gone (deleted by hand) is dropped from the index and
        not returned; runs copied in by hand appear once resolved or after `reindex`.

        Args:
            kind: only runs of this kind.
            name_contains: only runs whose name contains this text.
            tags: only runs that carry every one of these tags.
            status: only runs with this effective status (``crashed``: recorded as running,
                but the training process is gone).

        Returns:
            One dict per run: the columns of `lba_cli.runs.index.RUN_COLUMNS` and ``tags``;
            a damaged run has status ``damaged`` and its ``problem``.
        """
        if not self._exists():
            return []
        recorded = (RunStatus.running.value,) if status in (RunStatus.running, RunStatus.crashed) else (
            (status,) if status else ())
        with self._index() as db:
            rows = index.select_rows(db, kind=kind, name_contains=name_contains, tags=tags, statuses=recorded)
            gone = [row["id"] for row in rows if not looks_like_run_dir(self.root / row["id"])]
            for run_id in gone:
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        out = []
        for row in rows:
            if row["id"] in gone:
                continue
            row["status"] = _effective_status(row)
            if status is None or row["status"] == status:
                out.append(row)
        return out
