"""Seed ensembles: per-run mean ± std and the mean prediction's metrics, in evaluate and compare."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.compare import compare_runs, replicate_groups
from lba_cli.ensembles import summarise_replicates
from lba_cli.errors import DataError
from lba_cli.metrics import regression_metrics
from lba_cli.runs import RunStore


def _frame(ids, measured, predicted):
    return pl.DataFrame({"id": ids, "affinity_pk": measured, "predicted_pk": predicted})


def test_the_ensemble_is_the_mean_prediction_whatever_the_row_order():
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(12)]
    measured = rng.normal(6.5, 2.0, 12)
    runs = [measured + rng.normal(0, 1.0, 12) for _ in range(3)]
    frames = [_frame(ids, measured, p) for p in runs]
    frames[1] = frames[1].reverse()  # rows in another order: matched by id
    summary = summarise_replicates(frames)
    expected = regression_metrics(measured, np.mean(runs, axis=0))
    assert summary.ensemble["rmse"] == pytest.approx(expected["rmse"])
    assert summary.ensemble["pearson"] == pytest.approx(expected["pearson"])
    per_run = [regression_metrics(measured, p)["rmse"] for p in runs]
    assert summary.mean["rmse"] == pytest.approx(np.mean(per_run))
    assert summary.std["rmse"] == pytest.approx(np.std(per_run, ddof=1))
    assert summary.ensemble["rmse"] <= summary.mean["rmse"]  # Jensen: never worse than the average run
    lo, hi = summary.intervals["rmse"]
    assert lo <= summary.ensemble["rmse"] <= hi


@pytest.mark.parametrize("change,message", [
    (lambda f: f.head(5), "different complexes"),
    (lambda f: f.with_columns(pl.col("affinity_pk") + 1.0), "measured pK differ"),
], ids=["other-complexes", "other-measured"])
def test_replicates_of_different_complexes_are_refused(change, message):
    frame = _frame(["a", "b", "c", "d", "e", "f"], np.arange(6.0), np.arange(6.0) + 0.5)
    with pytest.raises(DataError, match=message):
        summarise_replicates([frame, change(frame)])


def _run(store, seed, init="random", lr=0.001, predictions=None):
    run = store.create_run({"kind": "finetune", "name": f"r{init[:2]}{lr}-s{seed}",
                            "train": {"seed": seed, "lr": lr, "device": "cpu"},
                            "finetune": {"init": init, "data_path": "/data.h5"}})
    run.update_status(status="completed", best_epoch=1, metrics={"val/rmse": 1.0 + seed, "test/rmse": 2.0})
    for split, frame in (predictions or {}).items():
        run.write_predictions(split, frame)
    return run


def test_replicate_groups_differ_only_in_seed(tmp_path):
    store = RunStore(tmp_path / "runs")
    a = [_run(store, s) for s in range(3)]
    b = [_run(store, s, lr=0.01) for s in range(2)]
    groups = replicate_groups([a[0], b[0], a[1], b[1], a[2]], store)
    assert [(label, [r.id for r in members]) for label, members in groups] == [
        ("random", [r.id for r in a]), ("random", [r.id for r in b])]


def test_compare_group_reports_the_ensemble_beside_mean_and_std(tmp_path):
    store = RunStore(tmp_path / "runs")
    ids = [f"c{i}" for i in range(8)]
    measured = np.linspace(4.0, 9.0, 8)
    predicted = [measured + d for d in (np.linspace(-1, 1, 8), np.linspace(1, -1, 8), np.full(8, 0.3))]
    runs = [_run(store, s, predictions={"val": _frame(ids, measured, p), "test": _frame(ids, measured, p)})
            for s, p in enumerate(predicted)]
    table = compare_runs(store, [r.id for r in runs], group_replicates=True).tables["finetune"]
    row = table.row(0, named=True)
    expected = regression_metrics(measured, np.mean(predicted, axis=0))["rmse"]
    assert row["runs"] == 3 and row["val/rmse ens"] == pytest.approx(expected)
    assert row["test/rmse ens"] == pytest.approx(expected)
    assert row["val/rmse mean"] == pytest.approx(2.0) and row["val/rmse std"] == pytest.approx(1.0)


def test_evaluate_ensemble_rows_match_the_saved_predictions(tmp_path, tiny_h5, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["finetune", str(tiny_h5), "--epochs", "1", "--batch-size", "4", "--name", "r",
                                 "--seeds", "0 1 2", "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "r-s0", "r-s1", "r-s2", "--split", "test", "--ensemble",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["run"]: row for row in json.loads(result.stdout)}
    store = RunStore(tmp_path / "runs")
    frames = [store.resolve(f"r-s{seed}").read_predictions("test").sort("id") for seed in range(3)]
    measured = frames[0]["affinity_pk"].to_numpy()
    by_hand = np.mean([f["predicted_pk"].to_numpy() for f in frames], axis=0)
    ensemble = rows["ensemble of 3"]
    assert ensemble["rmse"] == pytest.approx(regression_metrics(measured, by_hand)["rmse"])
    per_run = [regression_metrics(measured, f["predicted_pk"].to_numpy())["rmse"] for f in frames]
    assert rows["mean ± std of 3 runs"]["rmse"] == pytest.approx(np.mean(per_run))
    assert rows["mean ± std of 3 runs"]["rmse std"] == pytest.approx(np.std(per_run, ddof=1))
    assert {"baseline: train mean", "baseline: heavy atoms"} <= set(rows)
    plain = runner.invoke(app, ["evaluate", "r-s0", "r-s1", "--split", "test", "--format", "json"])
    assert not any(row["run"].startswith("ensemble") for row in json.loads(plain.stdout))  # only when asked
