"""The sweep table and figure: pretext accuracy beside its controls, seed ensembles, baseline rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lba_cli.data.grids_h5 import read_grid_set
from lba_cli.evaluate import PREDICTION_SCHEMA, evaluate_baselines
from lba_cli.metrics import regression_metrics
from lba_cli.runs import RunStore
from lba_cli.sweep import PRETRAIN_METRICS, _markdown, summarise_sweep, sweep_frame


@pytest.fixture()
def sweep_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    pre = store.create_run({"kind": "pretrain", "train": {"seed": 0},
                            "neighbor": {"pad_min_A": 1.0, "pad_max_A": 2.0, "angle_deg": 20.0}})
    pre.update_status(status="completed", metrics={"val/accuracy": 0.31, "val/shortcut_accuracy": 0.17,
                                                   "val/slab_shortcut_accuracy": 0.19})
    runs = []
    for label in ("random", "1-2-20", "1-2-20 frozen"):
        for seed in (0, 1):
            run = store.create_run({"kind": "finetune", "train": {"seed": seed}, "finetune": {"init": "random"}})
            run.update_status(status="completed", metrics={"val/rmse": 1.5 + seed, "test/rmse": 1.4,
                                                           "val/pearson": 0.5, "test/pearson": 0.6})
            runs.append((label, seed, run))
    return runs, [("1-2-20", pre)]


def test_summary_has_the_pretraining_metrics_per_label(sweep_runs):
    runs, pretrains = sweep_runs
    table = summarise_sweep(runs, pretrains)
    rows = {row["label"]: row for row in table.iter_rows(named=True)}
    assert rows["1-2-20"]["pretrain val/shortcut_accuracy"] == 0.17
    assert rows["1-2-20 frozen"]["pretrain val/accuracy"] == 0.31
    assert rows["random"]["pretrain val/accuracy"] is None
    assert rows["random"]["val/rmse mean"] == pytest.approx(2.0)
    assert rows["random"]["val/rmse std"] == pytest.approx(0.5 ** 0.5)  # sample std (ddof 1) of 1.5 and 2.5
    markdown = _markdown(table)
    assert "val/shortcut_accuracy" in markdown.splitlines()[0] and "| 0.310 | 0.170 | 0.190 |" in markdown


def test_sweep_frame_and_figure_show_the_controls(sweep_runs, tmp_path):
    from lba_cli.plots import plot_sweep, save_plot

    runs, pretrains = sweep_runs
    frame = sweep_frame(runs, pretrains)
    import polars as pl

    pretext = frame.filter((pl.col("label") == "1-2-20") & (pl.col("split") == "val"))
    assert set(pretext["metric"]) >= {name.split("/")[1] for name in PRETRAIN_METRICS}
    path = save_plot(plot_sweep(frame), tmp_path / "sweep.png", 9.0, 8.0)
    assert path.stat().st_size > 10_000


def _replicate(store, data, seed, shift):
    """A fine-tuning run whose predictions are the measured pK plus a per-complex offset."""
    run = store.create_run({"kind": "finetune", "train": {"seed": seed}, "finetune": {"data_path": str(data)}})
    grid_set = read_grid_set(data)
    metrics = {}
    for split in ("val", "test"):
        rows = grid_set.indices(split)
        measured = grid_set.affinity_pk[rows].astype(np.float64)
        predicted = measured + shift * np.cos(np.arange(len(rows)) + seed)
        run.write_predictions(split, pl.DataFrame({"id": grid_set.ids[rows].tolist(), "affinity_pk": measured,
                                                   "predicted_pk": predicted}, schema=PREDICTION_SCHEMA))
        metrics.update({f"{split}/{k}": v for k, v in regression_metrics(measured, predicted).items()})
    run.update_status(status="completed", metrics=metrics)
    return run


def test_sweep_table_has_ensemble_columns_and_baseline_rows(tmp_path, tiny_h5):
    store = RunStore(tmp_path / "runs")
    runs = [("random", seed, _replicate(store, tiny_h5, seed, 0.5 + seed)) for seed in range(3)]
    table = summarise_sweep(runs, (), tiny_h5)
    assert table["label"].to_list() == ["random", "baseline: train mean", "baseline: heavy atoms"]
    row = table.row(0, named=True)
    frames = [run.read_predictions("test").sort("id") for _, _, run in runs]
    mean_prediction = np.mean([f["predicted_pk"].to_numpy() for f in frames], axis=0)
    expected = regression_metrics(frames[0]["affinity_pk"].to_numpy(), mean_prediction)
    assert row["test/rmse ens"] == pytest.approx(expected["rmse"])
    per_run = [run.status["metrics"]["test/rmse"] for _, _, run in runs]
    assert row["test/rmse mean"] == pytest.approx(np.mean(per_run))
    assert row["test/rmse std"] == pytest.approx(np.std(per_run, ddof=1))
    heavy = table.row(2, named=True)
    reference = {r.run_id: r for r in evaluate_baselines(tiny_h5, "val")}["baseline: heavy atoms"]
    assert heavy["val/rmse mean"] == pytest.approx(reference.metrics["rmse"]) and heavy["runs"] == 0
    assert heavy["val/rmse std"] is None and heavy["val/rmse ens"] is None
    lines = [line for line in _markdown(table).splitlines() if line.startswith("|")]  # the table, not its caption
    assert "val/rmse ens" in lines[0] and lines[-1].startswith("| baseline: heavy atoms | 0 |")
