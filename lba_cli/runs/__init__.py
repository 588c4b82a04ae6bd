"""Runs: one directory per run (`lba_cli.runs.store`) and a SQLite index over them (`lba_cli.runs.index`)."""

from lba_cli.runs.index import INDEX_NAME, MIGRATIONS
from lba_cli.runs.store import (
    STALE_AFTER_S,
    Run,
    RunStore,
    default_runs_dir,
    is_run_dir,
    looks_like_run_dir,
    new_group_id,
    read_run_json,
    utc_now,
)

__all__ = ["RunStore", "Run", "new_group_id", "INDEX_NAME", "STALE_AFTER_S", "MIGRATIONS", "default_runs_dir",
           "utc_now", "is_run_dir", "looks_like_run_dir", "read_run_json"]
