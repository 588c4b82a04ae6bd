"""The run store: directories, the SQLite index and its migrations, resolution of references."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lba_cli.errors import RunNotFoundError, StoreError
from lba_cli.runs import INDEX_NAME, MIGRATIONS, RunStore, index

EXPECTED_COLUMNS = ["id", "kind", "name", "status", "created_at", "started_at", "finished_at", "heartbeat_at",
                    "parent_id", "config_json", "best_epoch", "metrics_json", "host", "pid", "problem"]


def _config(kind="finetune", **extra):
    return {"kind": kind, "name": extra.pop("name", None), "train": {"seed": 0, "lr": 0.001}, **extra}


def test_blank_store_gets_the_exact_schema(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.create_run(_config())
    db = sqlite3.connect(tmp_path / "runs" / INDEX_NAME)
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert columns == EXPECTED_COLUMNS
    assert [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")] == [m.__name__ for m in MIGRATIONS]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_are_applied_once(tmp_path):
    store = RunStore(tmp_path)
    store.create_run(_config())
    store.create_run(_config())
    db = sqlite3.connect(tmp_path / INDEX_NAME)
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


def test_run_directory_layout_and_status(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(_config(name="alpha"))
    assert (run.path / "config.json").is_file() and (run.path / "status.json").is_file()
    assert (run.path / "checkpoints").is_dir()
    assert run.config["lba_version"] and run.status["status"] == "created"
    run.update_status(status="completed", best_epoch=3, metrics={"val/rmse": 1.5})
    row = store.index_rows()[0]
    assert row["status"] == "completed" and row["best_epoch"] == 3
    assert json.loads(row["metrics_json"]) == {"val/rmse": 1.5}


def test_resolve_by_id_prefix_name_and_path(tmp_path):
    store = RunStore(tmp_path)
    a = store.create_run(_config(name="alpha"))
    b = store.create_run(_config(name="beta"))
    assert store.resolve(a.id).id == a.id
    assert store.resolve("beta").id == b.id
    assert store.resolve(str(a.path)).id == a.id
    unique = next(a.id[:n] for n in range(len(a.id) - 4, len(a.id) + 1) if not b.id.startswith(a.id[:n]))
    assert store.resolve(unique).id == a.id
    with pytest.raises(RunNotFoundError, match="matches 2 runs"):
        store.resolve(a.id[:4])
    with pytest.raises(RunNotFoundError, match="no run matches"):
        store.resolve("gamma")


def test_reindex_rebuilds_the_index_from_directories(tmp_path):
    store = RunStore(tmp_path)
    runs = [store.create_run(_config(name=f"r{i}")) for i in range(3)]
    runs[1].update_status(status="completed", metrics={"test/rmse": 1.4})
    (tmp_path / INDEX_NAME).unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{INDEX_NAME}{suffix}").unlink(missing_ok=True)
    assert store.reindex() == 3
    rows = {r["id"]: r for r in store.index_rows()}
    assert set(rows) == {r.id for r in runs}
    assert json.loads(rows[runs[1].id]["metrics_json"]) == {"test/rmse": 1.4}


def test_stale_heartbeat_reads_as_crashed(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(_config())
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    run.update_status(status="running", started_at=old, heartbeat_at=old)
    assert run.status["status"] == "crashed"
    assert store.index_rows()[0]["status"] == "crashed"
    run.heartbeat()
    assert run.status["status"] == "running"


def test_remove_deletes_directory_and_row(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(_config())
    store.remove(run)
    assert not run.path.exists() and store.index_rows() == []


def test_run_ids_sort_by_creation_time(tmp_path):
    store = RunStore(tmp_path)
    ids = []
    for _ in range(5):
        ids.append(store.create_run(_config()).id)
        time.sleep(0.002)  # ids resolve milliseconds
    assert len(set(ids)) == 5
    assert ids == sorted(ids)


metric_values = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
       metrics=st.dictionaries(st.sampled_from(["val/rmse", "test/rmse", "val/pearson"]), metric_values),
       best_epoch=st.one_of(st.none(), st.integers(1, 1000)))
def test_records_round_trip_through_sqlite(tmp_path_factory, name, metrics, best_epoch):
    store = RunStore(tmp_path_factory.mktemp("store"))
    run = store.create_run(_config(name=name))
    run.update_status(metrics=metrics, best_epoch=best_epoch)
    row = store.index_rows()[0]
    assert row["name"] == name and row["best_epoch"] == best_epoch
    assert json.loads(row["metrics_json"]) == metrics
    assert json.loads(row["config_json"])["name"] == name


def test_old_index_is_migrated_to_the_exact_current_schema(tmp_path):
    """An index written by the first version (m001 only) gains the later migrations on open."""
    old = tmp_path / "old"
    old.mkdir()
    db = sqlite3.connect(old / INDEX_NAME, isolation_level=None)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    MIGRATIONS[0](db)
    db.execute("INSERT INTO _migrations VALUES ('m001_create_runs', '2026-01-01T00:00:00+00:00')")
    db.execute("INSERT INTO runs (id, kind, status, created_at, config_json) VALUES ('r1', 'finetune', 'completed', "
               "'2026-01-01T00:00:00+00:00', '{}')")
    db.close()
    with index.connect(old):  # opening applies m002, m003
        pass

    blank = tmp_path / "blank"
    with index.connect(blank):
        pass

    def schema(path):
        con = sqlite3.connect(path / INDEX_NAME)
        return sorted(row for row in con.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE "
                                                 "'sqlite_%'"))

    assert schema(old) == schema(blank)
    con = sqlite3.connect(old / INDEX_NAME)
    assert con.execute("SELECT id, host FROM runs").fetchall() == [("r1", None)]  # data kept
    assert [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name")] == [m.__name__ for m in MIGRATIONS]


def test_index_follows_the_directories(tmp_path):
    """Runs deleted or copied in by hand, and a corrupt index, are set right from the directories."""
    from lba_cli.errors import StoreError

    store = RunStore(tmp_path)
    a = store.create_run(_config(name="a"))
    store.create_run(_config(name="b"))
    shutil.rmtree(a.path)
    assert [r["name"] for r in store.index_rows()] == ["b"]
    (tmp_path / INDEX_NAME).write_text("not a database")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{INDEX_NAME}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="reindex"):
        store.index_rows()
    assert store.reindex() == 1
    assert [r["name"] for r in store.index_rows()] == ["b"]
    assert list(tmp_path.glob(f"{INDEX_NAME}.broken-*"))


def test_reads_use_the_index_and_scan_directories_only_on_a_miss(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    a = store.create_run(_config(name="alpha"))
    store.create_run(_config(kind="pretrain", name="beta"))
    other = RunStore(tmp_path / "elsewhere").create_run(_config(name="gamma"))

    def no_scan(self):
        raise AssertionError("the run directories were scanned")

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "_run_dirs", no_scan)
        assert store.resolve("alpha").id == a.id and store.resolve(a.id).id == a.id
        assert [r["name"] for r in store.index_rows(kind="pretrain")] == ["beta"]
    copied = tmp_path / other.id
    shutil.copytree(other.path, copied)  # a run copied in by hand: found on the miss, then indexed
    assert store.resolve("gamma").path == copied
    assert [r["name"] for r in store.index_rows()] == ["alpha", "beta", "gamma"]


def test_list_filters_run_in_sql(tmp_path):
    store = RunStore(tmp_path)
    runs = [store.create_run(_config(kind=kind, name=name)) for kind, name in
            (("finetune", "rand-s0"), ("finetune", "rand-s1"), ("pretrain", "pre"))]
    store.tag(runs[0], add=["paper", "baseline"])
    store.tag(runs[1], add=["paper"])
    runs[1].update_status(status="completed")
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    runs[2].update_status(status="running", heartbeat_at=old)
    names = lambda **filters: [r["name"] for r in store.index_rows(**filters)]  # noqa: E731
    assert names(kind="finetune") == ["rand-s0", "rand-s1"]
    assert names(name_contains="rand") == ["rand-s0", "rand-s1"]
    assert names(tags=["paper"]) == ["rand-s0", "rand-s1"] and names(tags=["paper", "baseline"]) == ["rand-s0"]
    assert names(status="completed") == ["rand-s1"]
    assert names(status="crashed") == ["pre"] and names(status="running") == []
    assert store.index_rows(tags=["baseline"])[0]["tags"] == ["baseline", "paper"]


def test_a_failing_migration_leaves_no_trace(tmp_path, monkeypatch):
    from lba_cli.errors import StoreError

    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        db.execute("THIS IS NOT SQL")

    monkeypatch.setattr(index, "MIGRATIONS", (*MIGRATIONS, m999_broken))
    with pytest.raises(StoreError):
        with index.connect(tmp_path):
            pass
    db = sqlite3.connect(tmp_path / INDEX_NAME)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables and "runs" in tables
    assert "m999_broken" not in {row[0] for row in db.execute("SELECT name FROM _migrations")}


# Run files that are not what they claim: (id, damage done to the run's folder, what the problem names).
DAMAGE = [
    ("empty-status", lambda p: (p / "status.json").write_bytes(b""), "status.json is empty (0 bytes)"),
    ("blank-status", lambda p: (p / "status.json").write_text("  \n"), "status.json is empty (3 bytes)"),
    ("truncated-config", lambda p: (p / "config.json").write_text('{"kind": "fine'),
     "config.json is not valid JSON (Unterminated string starting at; line 1, column 10)"),
    ("config-missing", lambda p: (p / "config.json").unlink(), "config.json is missing"),
    ("status-a-list", lambda p: (p / "status.json").write_text("[1, 2]"),
     "status.json is not a JSON object but a list"),
    ("config-without-kind", lambda p: (p / "config.json").write_text("{}"), "config.json has no run kind"),
    ("status-not-utf8", lambda p: (p / "status.json").write_bytes(b"\xff\xfe{"), "cannot read"),
]


@pytest.mark.parametrize("damage,problem", [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE])
@pytest.mark.parametrize("index_kept", [False, True], ids=["index-deleted", "index-kept"])
def test_damaged_runs_are_named_and_healthy_runs_still_listed(tmp_path, damage, problem, index_kept):
    from lba_cli.compare import collect_runs

    store = RunStore(tmp_path)
    alpha = store.create_run(_config(name="alpha"))
    beta = store.create_run(_config(name="beta"))
    damage(beta.path)
    if not index_kept:
        for path in tmp_path.glob(f"{INDEX_NAME}*"):
            path.unlink()
        rows = {row["id"]: row for row in store.index_rows()}
        assert rows[alpha.id]["status"] == "created" and rows[alpha.id]["problem"] is None
        assert rows[beta.id]["status"] == "damaged" and problem in rows[beta.id]["problem"]
        assert str(beta.path) in rows[beta.id]["problem"]
    assert beta.problem() is not None and problem in beta.problem()
    resolved = store.resolve(beta.id)
    with pytest.raises(StoreError, match="json"):  # reading it names the file
        resolved.config, resolved.status  # noqa: B018
    runs, skipped = collect_runs(store, [str(p) for p in sorted(tmp_path.iterdir())])
    assert [r.id for r in runs] == [alpha.id]
    assert [ref for ref, _ in skipped] == [str(beta.path)] and problem in skipped[0][1]


def test_reindex_sets_a_repaired_run_right(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(_config(name="beta"))
    good = (run.path / "status.json").read_bytes()
    (run.path / "status.json").write_bytes(b"")
    assert store.reindex() == 1 and store.index_rows()[0]["status"] == "damaged"
    (run.path / "status.json").write_bytes(good)
    assert store.reindex() == 1 and store.index_rows()[0]["status"] == "created"


def test_a_runs_directory_that_is_a_file_is_said(tmp_path):
    (tmp_path / "runs").write_text("oops")
    store = RunStore(tmp_path / "runs")
    for call in (store.index_rows, store.reindex, lambda: store.resolve("x"), lambda: store.create_run(_config())):
        with pytest.raises(StoreError, match="is not a folder"):
            call()
